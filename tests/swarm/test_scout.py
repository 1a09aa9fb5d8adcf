"""The scout node against a fake oracle: it refuses a tokenizer it does not share, stops on
refusals retrying cannot fix, and redials with backoff when the oracle goes away."""

import asyncio
import json
from typing import Any, cast

import pytest
import websockets
from websockets.asyncio.server import ServerConnection

from shard.config import ScoutSettings
from shard.swarm.draft_model import DraftModel
from shard.swarm.protocol import PROTOCOL_VERSION
from shard.swarm.scout import Scout, ScoutRefused, websocket_url

FINGERPRINT = "f" * 64


class FakeModel:
    fingerprint = FINGERPRINT
    n_vocab = 100

    def run_ahead(self, limit: int) -> str | None:
        return None  # nothing to draft ahead for


def scout_for(port: int) -> Scout:
    settings = ScoutSettings(
        oracle=f"http://127.0.0.1:{port}", key="sk-oracle-" + "k" * 40, scout_id="unit"
    )
    return Scout(settings, cast(DraftModel, FakeModel()))


def welcome(tokenizer: str) -> str:
    return json.dumps(
        {
            "type": "welcome",
            "version": PROTOCOL_VERSION,
            "scout_id": "unit",
            "oracle_version": "test",
            "model": "m",
            "tokenizer": tokenizer,
        }
    )


def test_websocket_url_from_the_oracle_base_url() -> None:
    assert websocket_url("http://h:8000") == "ws://h:8000/scouts/connect"
    assert websocket_url("https://h/v1/") == "wss://h/scouts/connect"
    assert websocket_url("h:9") == "ws://h:9/scouts/connect"


async def serve_once(handler: Any) -> tuple[Any, int]:
    server = await websockets.serve(handler, "127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    return server, port


def test_the_scout_refuses_an_oracle_with_another_tokenizer() -> None:
    hellos: list[dict[str, Any]] = []

    async def handler(connection: ServerConnection) -> None:
        hellos.append(json.loads(await connection.recv()))
        await connection.send(welcome("0" * 64))
        await connection.wait_closed()

    async def scenario() -> None:
        server, port = await serve_once(handler)
        async with server:
            with pytest.raises(ScoutRefused, match="tokenizer"):
                await asyncio.wait_for(scout_for(port).run_forever(), 20)

    asyncio.run(scenario())
    assert hellos[0]["tokenizer"] == FINGERPRINT
    assert hellos[0]["scout_id"] == "unit"


@pytest.mark.parametrize(
    ("code", "reason"),
    [(4009, "tokenizer mismatch: use another draft model"), (4003, "banned: reputation 0.10")],
)
def test_the_scout_stops_when_the_oracle_refuses_it(code: int, reason: str) -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.recv()
        await connection.close(code, reason)

    async def scenario() -> None:
        server, port = await serve_once(handler)
        async with server:
            with pytest.raises(ScoutRefused, match=f"\\({code}\\): {reason}"):
                await asyncio.wait_for(scout_for(port).run_forever(), 20)

    asyncio.run(scenario())


def test_the_scout_reconnects_with_backoff_and_answers_pings() -> None:
    arrivals: list[float] = []
    pongs: list[dict[str, Any]] = []

    async def handler(connection: ServerConnection) -> None:
        arrivals.append(asyncio.get_running_loop().time())
        await connection.recv()
        await connection.send(welcome(FINGERPRINT))
        await connection.send(json.dumps({"type": "ping", "nonce": len(arrivals)}))
        pongs.append(json.loads(await connection.recv()))
        await connection.close(1012, "going away")  # not a refusal: the scout must redial

    async def scenario() -> None:
        server, port = await serve_once(handler)
        async with server:
            running = asyncio.create_task(scout_for(port).run_forever())
            while len(arrivals) < 3:
                await asyncio.sleep(0.05)
            running.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert [p["nonce"] for p in pongs[:2]] == [1, 2]
    first_wait, second_wait = arrivals[1] - arrivals[0], arrivals[2] - arrivals[1]
    assert 0.7 < first_wait < 1.5  # about 1 s, with jitter
    assert second_wait > first_wait  # then about 2 s
