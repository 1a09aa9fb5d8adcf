"""The registry keeps every connected scout and only the latest to leave of the rest: ids
are free to make up, and 1000 made-up ones made `GET /scouts` 417 KB."""

import asyncio

from shard.swarm.registry import MAX_GONE, Registry
from tests.swarm.fakes import FakeLink


def test_only_the_latest_gone_scouts_are_remembered() -> None:
    async def main() -> None:
        registry = Registry()
        staying = await registry.attach(FakeLink(), "staying", "key", "m")
        for index in range(MAX_GONE + 40):
            record = await registry.attach(FakeLink(), f"junk-{index}", "key", "m")
            registry.detach(record, "disconnected", "left")
        assert registry.get("staying") is staying and staying.connected
        assert len(registry.records) == MAX_GONE + 1
        assert registry.get("junk-0") is None  # the longest gone went first
        assert registry.get(f"junk-{MAX_GONE + 39}") is not None
        back = await registry.attach(FakeLink(), f"junk-{MAX_GONE + 39}", "key", "m")
        assert back.connected and len(registry.records) == MAX_GONE + 1

    asyncio.run(main())
