"""An in-process hub for unit tests: real stores on a SQLite file, a fake engine (a real draft
sink), and fake WebSockets the test speaks through as the scout. No model, no processes.

Run scenarios with `asyncio.run`; `Rig.join` connects a scout and returns its link.
"""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shard.engine.client import Generation
from shard.engine.spec.scout_drafts import DraftSink
from shard.engine.types import EngineStatus, GenerationRequest, SequenceUpdate
from shard.store.api_keys import KeyRecord, KeyStore
from shard.store.database import Database
from shard.store.reservations import ReservationStore
from shard.store.scout_records import ContributionStore, ScoutRecordStore
from shard.swarm.engine_handle import WORK_STEPS
from shard.swarm.golden_tickets import Completion
from shard.swarm.hub import Hub, HubSettings
from shard.swarm.reputation import BanPolicy
from shard.swarm.trust import Trust

FINGERPRINT = "f" * 64
N_VOCAB = 1000
DRAFT_MAX = 4
WORK_K = WORK_STEPS * DRAFT_MAX
"""What work frames ask for: two steps' worth."""
WAIT_S = 5.0


class LinkClosed(Exception):
    """What a real socket raises once it is gone."""


class FakeLink:
    """One scout's WebSocket as the hub sees it; the test plays the scout."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None
        self._closed = asyncio.Event()

    # the hub's side (ScoutLink)
    async def receive_text(self) -> str:
        text = await self._inbox.get()
        if text is None:
            raise LinkClosed()
        return text

    async def send_text(self, data: str) -> None:
        if self.closed is not None:
            raise LinkClosed()
        self.frames.put_nowait(json.loads(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if self.closed is None:
            self.closed = (code, reason or "")
            self._closed.set()
            self._inbox.put_nowait(None)

    # the scout's side
    def say(self, frame: dict[str, Any] | str) -> None:
        self._inbox.put_nowait(frame if isinstance(frame, str) else json.dumps(frame))

    def vanish(self) -> None:
        """The connection drops without a close frame."""
        self._inbox.put_nowait(None)

    async def next_frame(self, kind: str = "work") -> dict[str, Any]:
        """The next frame of this kind the hub sent (others are skipped)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                frame = await self.frames.get()
                if frame["type"] == kind:
                    return frame

    def pending(self, kind: str = "work") -> list[dict[str, Any]]:
        """Frames of this kind sent and not yet read, without waiting."""
        found = []
        while not self.frames.empty():
            frame = self.frames.get_nowait()
            if frame["type"] == kind:
                found.append(frame)
        return found

    async def wait_closed(self) -> tuple[int, str]:
        async with asyncio.timeout(WAIT_S):
            await self._closed.wait()
        assert self.closed is not None
        return self.closed

    def answer(self, work: dict[str, Any], tokens: list[int], position: int | None = None) -> None:
        """Draft `tokens` for the work: after its tokens, as an honest scout would, unless
        `position` says otherwise."""
        if position is None:
            position = work["position"] + len(work["tokens"])
        self.say({"type": "draft", "seq": work["seq"], "position": position, "tokens": tokens})


@dataclass
class FakeEngine:
    """The engine client's swarm-facing side: a status, a real draft sink, the progress
    switch's history."""

    ready: bool = True
    status: EngineStatus | None = field(
        default_factory=lambda: EngineStatus(
            n_vocab=N_VOCAB,
            n_ctx=2048,
            n_seq=4,
            draft_max=DRAFT_MAX,
            tokenizer_fingerprint=FINGERPRINT,
            chat_template="test",
        )
    )
    drafts: DraftSink = field(default_factory=DraftSink)
    in_flight: int = 0
    following: list[bool] = field(default_factory=list)
    ceded: list[int] = field(default_factory=list)

    def follow_progress(self, on: bool) -> None:
        self.following.append(on)

    def cede_threads(self, threads: int) -> None:
        self.ceded.append(threads)

    def generate(self, request: GenerationRequest) -> AbstractAsyncContextManager[Generation]:
        return _no_generation()


@contextlib.asynccontextmanager
async def _no_generation() -> AsyncIterator[Generation]:
    raise RuntimeError("unit tests do not generate")
    yield  # pragma: no cover


@dataclass
class Rig:
    hub: Hub
    engine: FakeEngine
    database: Database
    admin: KeyRecord
    user: KeyRecord
    records: ScoutRecordStore
    contributions: ContributionStore
    reservations: ReservationStore
    scout_counts: list[int]
    _sessions: list["asyncio.Task[None]"] = field(default_factory=list)

    async def connect(
        self,
        scout_id: str,
        key: KeyRecord | None = None,
        peer: str = "203.0.113.7",
        **hello: Any,
    ) -> FakeLink:
        """A scout that has said hello from `peer` (the welcome, or a refusal, is up to the
        test)."""
        link = FakeLink()
        session = self.hub.serve(link, key or self.admin, peer)
        self._sessions.append(asyncio.create_task(session))
        link.say(
            {
                "type": "hello",
                "version": 1,
                "scout_id": scout_id,
                "tokenizer": FINGERPRINT,
                "draft_model": "fake",
                **hello,
            }
        )
        return link

    async def join(self, scout_id: str, key: KeyRecord | None = None, version: int = 1) -> FakeLink:
        """A scout that has joined (its welcome read), speaking protocol `version`."""
        link = await self.connect(scout_id, key, version=version)
        welcome = await link.next_frame("welcome")
        assert welcome["scout_id"] == scout_id and welcome["version"] == version
        return link

    def step(self, key: str, tokens: list[int], start: int = 0, owner: str | None = None) -> None:
        """The engine reports a sequence's new tokens."""
        self.hub.on_reports([SequenceUpdate(key, owner, start, tuple(tokens))])

    def end(self, key: str) -> None:
        self.hub.on_reports([SequenceUpdate(key, None, 0, (), ended=True)])

    def expire_deadlines(self) -> None:
        """As if every deadline had passed."""
        self.hub.tickets.expire(time.monotonic() + 3600)
        self.hub.dispatch.expire(time.monotonic() + 3600)

    def give_tickets(self, continuation: tuple[int, ...] = tuple(range(10, 40))) -> None:
        """Golden tickets ready without generating: a prompt and the oracle's continuation."""
        self.hub.tickets.book.completions.append(Completion((1, 2, 3), continuation))

    async def settle(self) -> None:
        """Let the hub's tasks (closing links, ending sessions) run."""
        for _ in range(20):
            await asyncio.sleep(0)

    async def close(self) -> None:
        await self.hub.stop()
        for session in self._sessions:
            session.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        self.database.close()


def make_rig(tmp_path: Path, settings: HubSettings | None = None, **policy: Any) -> Rig:
    """Call inside the scenario's event loop."""
    database = Database(f"sqlite:///{tmp_path / 'shard.db'}")
    keys = KeyStore(database)
    _, admin = keys.create("admin", role="admin")
    _, user = keys.create("user")
    records, contributions = ScoutRecordStore(database), ContributionStore(database)
    reservations = ReservationStore(database)
    trust = Trust(records, contributions, BanPolicy(**policy))
    engine = FakeEngine()
    counts: list[int] = []
    hub = Hub(
        settings or HubSettings(golden_ticket_rate=0.0),
        lambda: engine,
        reservations,
        trust,
        "test-model",
        counts.append,
    )
    return Rig(hub, engine, database, admin, user, records, contributions, reservations, counts)


def run_with_rig(
    tmp_path: Path,
    body: Callable[[Rig], Awaitable[None]],
    settings: HubSettings | None = None,
    **policy: Any,
) -> None:
    """Run `body` against a fresh rig in its own event loop, then stop the hub."""

    async def scenario() -> None:
        rig = make_rig(tmp_path, settings, **policy)
        try:
            await body(rig)
        finally:
            await rig.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
