"""Every scout this oracle has seen since it started: its record (figures, event log, and its
link while connected), and the only ways in and out: attach, detach, drop.

Records outlive connections, so a scout that reconnects keeps its figures and log. All of it
belongs to the event loop; nothing here touches the store.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from shard.swarm.protocol import CLOSE_DROPPED, CLOSE_REPLACED, Cancel, Ping, Work, encode

log = logging.getLogger(__name__)

LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")
MAX_OUTBOX = 2000
"""Frames waiting for a scout that does not read them; past this it is dropped."""
MAX_GONE = 256
"""Records of scouts not connected kept (for their figures and logs), the latest to leave:
ids are free to make up, so keeping every one would grow memory and `GET /scouts` without
bound."""


class ScoutLink(Protocol):
    """The hub's view of one scout's WebSocket (Starlette's, or a fake in unit tests)."""

    async def receive_text(self) -> str: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


def close_reason(text: str) -> str:
    """A WebSocket close reason must fit a 125-byte control frame."""
    return text.encode()[:120].decode(errors="ignore")


async def close_link(link: ScoutLink, code: int, reason: str) -> None:
    """Close a link that may already be gone."""
    with contextlib.suppress(Exception):
        await link.close(code, close_reason(reason))


@dataclass(frozen=True)
class ScoutLogEntry:
    timestamp: float
    """Unix seconds."""
    level: LogLevel
    message: str


@dataclass(eq=False)
class ScoutRecord:
    """Everything the hub knows about one scout id, connected or not."""

    scout_id: str
    key_id: str
    draft_model: str
    connected_at: float = field(default_factory=time.time)
    link: ScoutLink | None = None
    status: str = "connected"
    """connected, disconnected or dropped (views show a connected one as busy or idle)."""
    tasks_completed: int = 0
    tasks_failed: int = 0
    latency_ms_total: float = 0.0
    draft_tokens: int = 0
    """Timely draft tokens (ahead of the oracle when a step was planned): what is credited."""
    accepted_tokens: int = 0
    judged_tokens: int = 0
    """Every scored draft token, late ones too: what the scout is judged useful on."""
    judged_accepted: int = 0
    misses: int = 0
    """Deadlines missed in a row, this connection."""
    protocol_version: int = 1
    """The version this connection speaks: 2 streams its drafts."""
    local_threads: int = 0
    """CPU threads this connection drafts with on the oracle's own machine (0: elsewhere)."""
    unsolicited: int = 0
    """Drafts for work never sent, this connection."""
    last_seen: float = field(default_factory=time.monotonic)
    left_at: float = 0.0
    """When its last connection ended (monotonic seconds)."""
    outbox: "asyncio.Queue[str]" = field(default_factory=asyncio.Queue)
    logs: deque[ScoutLogEntry] = field(default_factory=lambda: deque(maxlen=500))

    @property
    def connected(self) -> bool:
        return self.link is not None

    def attach(self, link: ScoutLink, draft_model: str) -> None:
        """Start a connection: fresh per-connection state, the scout's figures kept."""
        self.link, self.draft_model, self.status = link, draft_model, "connected"
        self.connected_at, self.last_seen = time.time(), time.monotonic()
        self.misses = self.unsolicited = 0
        self.outbox = asyncio.Queue()

    @property
    def acceptance_rate(self) -> float | None:
        return round(self.accepted_tokens / self.draft_tokens, 4) if self.draft_tokens else None

    @property
    def avg_latency_ms(self) -> float | None:
        if not self.tasks_completed:
            return None
        return round(self.latency_ms_total / self.tasks_completed, 2)

    def log(self, level: LogLevel, message: str) -> None:
        self.logs.append(ScoutLogEntry(time.time(), level, message))
        log.log(logging.getLevelName(level.upper()), "scout %s: %s", self.scout_id, message)

    def recent_logs(self, limit: int, level: LogLevel | None = None) -> list[ScoutLogEntry]:
        """The last `limit` entries at `level` or above, oldest first."""
        floor = LOG_LEVELS.index(level) if level else 0
        entries = [entry for entry in self.logs if LOG_LEVELS.index(entry.level) >= floor]
        return entries[-limit:]


class Registry:
    """The records, and who is connected. `on_leave` hears of every scout that leaves (its
    sequences must go to others); `on_count` of every change in how many are connected."""

    def __init__(
        self,
        on_leave: Callable[[ScoutRecord], None] = lambda record: None,
        on_count: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.records: dict[str, ScoutRecord] = {}
        self._on_leave = on_leave
        self._on_count = on_count
        self._closing: set[asyncio.Task[None]] = set()

    def get(self, scout_id: str) -> ScoutRecord | None:
        return self.records.get(scout_id)

    @property
    def connected(self) -> list[ScoutRecord]:
        return [record for record in self.records.values() if record.connected]

    async def attach(
        self, link: ScoutLink, scout_id: str, key_id: str, draft_model: str, local_threads: int = 0
    ) -> ScoutRecord:
        """The scout's record, now connected through `link`; an older connection with the
        same id is closed (figures and log carry over a reconnect)."""
        record = self.records.get(scout_id)
        if record is not None and record.link is not None:
            old = record.link
            self.detach(record, "disconnected", "replaced by a new connection")
            await close_link(old, CLOSE_REPLACED, "replaced by a new connection with this id")
        if record is None:
            record = self.records[scout_id] = ScoutRecord(scout_id, key_id, draft_model)
        record.attach(link, draft_model)
        record.local_threads = local_threads
        self._on_count(len(self.connected))
        return record

    def detach(self, record: ScoutRecord, status: str, reason: str) -> None:
        """The scout's connection is over (closing the link is the caller's business)."""
        if record.link is None:
            return
        record.link = None
        record.status = status
        record.left_at = time.monotonic()
        record.log("warning" if status == "dropped" else "info", f"{status}: {reason}")
        self._on_leave(record)
        self._on_count(len(self.connected))
        self._forget_the_longest_gone()

    def _forget_the_longest_gone(self) -> None:
        gone = [record for record in self.records.values() if record.link is None]
        gone.sort(key=lambda record: record.left_at)
        for record in gone[: max(0, len(gone) - MAX_GONE)]:
            del self.records[record.scout_id]

    async def drop(self, record: ScoutRecord, reason: str, code: int = CLOSE_DROPPED) -> None:
        """Let a misbehaving scout go, telling it why."""
        await self._end(record, "dropped", reason, code)

    async def _end(self, record: ScoutRecord, status: str, reason: str, code: int) -> None:
        link = record.link
        self.detach(record, status, reason)
        if link is not None:
            await close_link(link, code, reason)

    def drop_soon(self, record: ScoutRecord, reason: str, code: int = CLOSE_DROPPED) -> None:
        """Drop from synchronous code: the scout is detached now, its link closed by a task."""
        if record.connected:
            self._spawn(self.drop(record, reason, code))

    def _spawn(self, closing: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(closing)
        self._closing.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._closing.discard)

    def send(self, scout_id: str, frame: Work | Cancel | Ping) -> bool:
        """Queue a frame for a connected scout; False when it cannot go."""
        record = self.records.get(scout_id)
        if record is None or not record.connected:
            return False
        if record.outbox.qsize() >= MAX_OUTBOX:
            self.drop_soon(record, "not reading its frames")
            return False
        record.outbox.put_nowait(encode(frame))
        return True

    async def disconnect_all(self, code: int, reason: str) -> None:
        """Close every scout (a restart or shutdown)."""
        for record in self.connected:
            await self._end(record, "disconnected", reason, code)
