"""The oracle's side of the swarm: who is connected, which scout drafts for which sequence,
deadlines, reservations, and dropping scouts that misbehave.

Everything here runs on the event loop. The engine reports each step's progress through the
scheduler (`on_reports`); the hub turns it into work frames and hands drafts back through the
engine's `ScoutDrafts` box, which the engine reads without waiting (DESIGN.md invariant 4).
Scouts are untrusted: a failing scout is logged and dropped, never raised into anyone else.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from shard import __version__
from shard.engine.drafting import DraftOutcome, ScoutDraft, SequenceUpdate
from shard.engine.engine import Engine
from shard.engine.scheduler import Scheduler
from shard.store.api_keys import KeyRecord
from shard.store.reservations import Reservation, ReservationStore
from shard.swarm.golden_tickets import Ticket, TicketBook
from shard.swarm.protocol import (
    CLOSE_BANNED,
    CLOSE_DROPPED,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_REPLACED,
    CLOSE_RESTARTING,
    CLOSE_TOKENIZER_MISMATCH,
    MAX_DRAFT_TOKENS,
    PROTOCOL_VERSION,
    Cancel,
    Draft,
    Hello,
    Ping,
    Pong,
    ProtocolError,
    Resync,
    Welcome,
    Work,
    encode,
    parse_scout_frame,
)
from shard.swarm.trust import Trust

log = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error")
_HELLO_TIMEOUT_S = 10.0
_TICK_S = 0.1
_MAX_FRAMES_PER_SECOND = 500
_MAX_OUTBOX = 2000


def close_reason(text: str) -> str:
    """A WebSocket close reason must fit a 125-byte control frame."""
    return text.encode()[:120].decode(errors="ignore")


async def _close(link: "ScoutLink", code: int, reason: str) -> None:
    await link.close(code, close_reason(reason))


class ScoutLink(Protocol):
    """The hub's view of one scout's WebSocket (Starlette's, or a fake in unit tests)."""

    async def receive_text(self) -> str: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(frozen=True)
class HubSettings:
    deadline_ms: int = 1000
    """How long a scout has to answer work; past it the work counts as failed."""
    max_misses: int = 8
    """Consecutive missed deadlines before a scout is dropped."""
    min_acceptance: float = 0.05
    """A scout whose drafts are accepted less often than this, once judged, is dropped."""
    judge_after_tokens: int = 64
    ping_interval_s: float = 10.0
    scouts_per_request: int = 1
    golden_ticket_rate: float = 0.05
    """Share of work frames that are golden tickets."""
    max_unsolicited: int = 20
    """Drafts for work never sent (flooding) tolerated before a scout is dropped."""


@dataclass
class ScoutLogEntry:
    timestamp: float
    level: str
    message: str


@dataclass(eq=False)
class ScoutRecord:
    """Everything the hub knows about one scout id, connected or not."""

    scout_id: str
    key_id: str
    draft_model: str
    connected_at: float
    link: ScoutLink | None = None
    status: str = "connected"
    tasks_completed: int = 0
    tasks_failed: int = 0
    latency_ms_total: float = 0.0
    draft_tokens: int = 0
    accepted_tokens: int = 0
    misses: int = 0
    unsolicited: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    frames_this_second: int = 0
    second: int = 0
    outbox: "asyncio.Queue[str]" = field(default_factory=asyncio.Queue)
    logs: deque[ScoutLogEntry] = field(default_factory=lambda: deque(maxlen=500))

    @property
    def connected(self) -> bool:
        return self.link is not None

    def attach(self, link: ScoutLink, draft_model: str) -> None:
        """Start a connection: fresh per-connection state, the scout's figures kept."""
        self.link, self.draft_model, self.status = link, draft_model, "connected"
        self.connected_at, self.last_seen = time.time(), time.monotonic()
        self.misses = self.unsolicited = self.frames_this_second = 0
        self.outbox = asyncio.Queue()

    @property
    def acceptance_rate(self) -> float | None:
        return round(self.accepted_tokens / self.draft_tokens, 4) if self.draft_tokens else None

    @property
    def avg_latency_ms(self) -> float | None:
        if not self.tasks_completed:
            return None
        return round(self.latency_ms_total / self.tasks_completed, 2)

    def log(self, level: str, message: str) -> None:
        self.logs.append(ScoutLogEntry(time.time(), level, message))
        log.log(logging.getLevelName(level.upper()), "scout %s: %s", self.scout_id, message)


@dataclass
class _Work:
    position: int
    """Where the scout's draft must start: the sequence's length when the work was sent."""
    k: int
    sent_at: float
    deadline: float


@dataclass(eq=False)
class _Sequence:
    key: str
    owner: str | None
    tokens: list[int] = field(default_factory=list)
    scouts: list[str] = field(default_factory=list)
    synced: dict[str, int] = field(default_factory=dict)
    outstanding: dict[str, _Work] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)


@dataclass
class _TicketWork:
    scout_id: str
    ticket: Ticket
    sent_at: float
    deadline: float
    result: "asyncio.Future[TicketResult] | None" = None


@dataclass(frozen=True)
class TicketResult:
    expected: tuple[int, ...]
    drafted: tuple[int, ...]
    score: float
    latency_ms: float | None
    """None when the scout did not answer in time."""


class ReservationError(Exception):
    """A reservation the hub cannot make or end; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.param = param


class Hub:
    def __init__(
        self,
        settings: HubSettings,
        scheduler: Callable[[], Scheduler | None],
        reservations: ReservationStore,
        trust: Trust,
        model_name: str,
        on_scout_count: Callable[[int], None] = lambda count: None,
    ) -> None:
        self.settings = settings
        self._scheduler = scheduler
        self._reservations = reservations
        self.trust = trust
        self.tickets = TicketBook()
        self._ticket_work: dict[str, _TicketWork] = {}
        self._expired_tickets: deque[str] = deque(maxlen=1000)
        self._rng = random.Random()
        self._model_name = model_name
        self._on_scout_count = on_scout_count
        self.records: dict[str, ScoutRecord] = {}
        self._sequences: dict[str, _Sequence] = {}
        self._reserved_by: dict[str, str] = {}
        """scout id -> key id, for every active reservation."""
        self._ticker: asyncio.Task[None] | None = None

    def _engine(self) -> Engine | None:
        scheduler = self._scheduler()
        return scheduler.engine if scheduler is not None and scheduler.ready else None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.refresh_reservations()
        self._ticker = asyncio.create_task(self._tick_forever())

    async def stop(self, reason: str = "the oracle is shutting down") -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await self.disconnect_all(CLOSE_RESTARTING, reason)

    async def disconnect_all(self, code: int, reason: str) -> None:
        """Close every scout (a restart or shutdown); running sequences are forgotten too."""
        self._sequences.clear()
        for record in list(self.records.values()):
            if record.link is not None:
                with contextlib.suppress(Exception):
                    await _close(record.link, code, reason)
                self._unregister(record, "disconnected", reason)

    @property
    def connected(self) -> list[ScoutRecord]:
        return [record for record in self.records.values() if record.connected]

    # -- a scout's session ----------------------------------------------------------------------

    async def serve(self, link: ScoutLink, key: KeyRecord) -> None:
        """Handshake, then read the scout's frames until it leaves or is dropped."""
        try:
            hello = await asyncio.wait_for(self._read_hello(link), _HELLO_TIMEOUT_S)
        except (TimeoutError, ProtocolError) as error:
            reason = error.reason if isinstance(error, ProtocolError) else "no hello in time"
            code = error.close_code if isinstance(error, ProtocolError) else CLOSE_PROTOCOL_ERROR
            await _close(link, code, reason)
            return
        refusal = self._refusal(hello, key)
        if refusal is not None:
            await _close(link, *refusal)
            return
        record = await self._register(link, key, hello)
        writer = asyncio.create_task(self._write_forever(record, link))
        try:
            await self._read_forever(record, link)
        except ProtocolError as error:
            await self._drop(record, error.reason, error.close_code)
        except Exception as error:  # the socket went away
            if record.link is link:
                self._unregister(record, "disconnected", f"connection lost: {type(error).__name__}")
        finally:
            writer.cancel()
            if record.link is link:
                self._unregister(record, "disconnected", "scout left")

    async def _read_hello(self, link: ScoutLink) -> Hello:
        frame = parse_scout_frame(await link.receive_text())
        if not isinstance(frame, Hello):
            raise ProtocolError(f"the first frame must be hello, not {frame.type}")
        return frame

    def _refusal(self, hello: Hello, key: KeyRecord) -> tuple[int, str] | None:
        engine = self._engine()
        if hello.version != PROTOCOL_VERSION:
            return CLOSE_PROTOCOL_ERROR, (
                f"protocol version {hello.version} is not supported; this oracle speaks "
                f"{PROTOCOL_VERSION}"
            )
        if engine is None or not engine.tokenizer_fingerprint:
            return 1013, "the oracle's model is still loading; try again shortly"
        if hello.tokenizer != engine.tokenizer_fingerprint:
            return CLOSE_TOKENIZER_MISMATCH, (
                f"tokenizer mismatch: oracle {engine.tokenizer_fingerprint[:12]}, scout "
                f"{hello.tokenizer[:12]}; use a draft model with the oracle's tokenizer"
            )
        return self.trust.refusal(hello.scout_id, key.id)

    async def _register(self, link: ScoutLink, key: KeyRecord, hello: Hello) -> ScoutRecord:
        existing = self.records.get(hello.scout_id)
        if existing is not None and existing.link is not None:
            old = existing.link
            self._unregister(existing, "disconnected", "replaced by a new connection")
            with contextlib.suppress(Exception):
                await _close(old, CLOSE_REPLACED, "replaced by a new connection with this id")
        record = existing or ScoutRecord(hello.scout_id, key.id, hello.draft_model, time.time())
        record.attach(link, hello.draft_model)  # figures and logs carry over a reconnect
        self.records[hello.scout_id] = record
        welcome = Welcome(
            scout_id=hello.scout_id,
            oracle_version=__version__,
            model=self._model_name,
            tokenizer=hello.tokenizer,  # equal to the oracle's, or the scout was refused
        )
        await link.send_text(encode(welcome))
        record.log("info", f"connected with draft model {hello.draft_model or 'unnamed'}")
        self._set_swarm_active()
        scheduler = self._scheduler()
        if scheduler is not None and scheduler.ready:
            self.tickets.fill_when_idle(scheduler)
        return record

    async def _write_forever(self, record: ScoutRecord, link: ScoutLink) -> None:
        with contextlib.suppress(Exception):
            while True:
                await link.send_text(await record.outbox.get())

    async def _read_forever(self, record: ScoutRecord, link: ScoutLink) -> None:
        while record.link is link:
            text = await link.receive_text()
            self._count_frame(record)
            frame = parse_scout_frame(text)
            record.last_seen = time.monotonic()
            if isinstance(frame, Draft):
                self._take_draft(record, frame)
            elif isinstance(frame, Resync):
                self._resync(record, frame.seq)
            elif isinstance(frame, Pong):
                pass
            else:
                raise ProtocolError("hello may only be sent once")

    def _count_frame(self, record: ScoutRecord) -> None:
        second = int(time.monotonic())
        if second != record.second:
            record.second, record.frames_this_second = second, 0
        record.frames_this_second += 1
        if record.frames_this_second > _MAX_FRAMES_PER_SECOND:
            raise ProtocolError(f"more than {_MAX_FRAMES_PER_SECOND} frames a second")

    def _unregister(self, record: ScoutRecord, status: str, reason: str) -> None:
        if record.link is None:
            return
        record.link = None
        record.status = status
        record.log("warning" if status == "dropped" else "info", f"{status}: {reason}")
        for sequence in self._sequences.values():
            if record.scout_id in sequence.scouts:
                sequence.scouts.remove(record.scout_id)
            sequence.synced.pop(record.scout_id, None)
            sequence.outstanding.pop(record.scout_id, None)
        self._set_swarm_active()

    async def _drop(self, record: ScoutRecord, reason: str, code: int = CLOSE_DROPPED) -> None:
        link = record.link
        self._unregister(record, "dropped", reason)
        if link is not None:
            with contextlib.suppress(Exception):
                await _close(link, code, reason)

    def _drop_soon(self, record: ScoutRecord, reason: str) -> None:
        """Drop from synchronous code (a listener): the close runs as its own task."""
        if record.connected:
            asyncio.get_running_loop().create_task(self._drop(record, reason))

    def _set_swarm_active(self) -> None:
        count = len(self.connected)
        engine = self._engine()
        if engine is not None:
            engine.swarm_active = count > 0
        self._on_scout_count(count)

    # -- work out, drafts in ------------------------------------------------------------------

    def on_reports(self, reports: Sequence[object]) -> None:
        """Scheduler listener: new tokens of running sequences, ends, and draft outcomes."""
        touched: dict[str, _Sequence] = {}
        for report in reports:
            if isinstance(report, DraftOutcome):
                self._score(report)
            elif isinstance(report, SequenceUpdate):
                sequence = self._update_sequence(report)
                if sequence is not None:
                    touched[sequence.key] = sequence
        if self.connected:
            for sequence in touched.values():
                self._dispatch(sequence)

    def _update_sequence(self, update: SequenceUpdate) -> _Sequence | None:
        if update.ended:
            sequence = self._sequences.pop(update.sequence_key, None)
            if sequence is not None:
                for scout_id in sequence.scouts:
                    self._send(scout_id, Cancel(seq=sequence.key))
            return None
        sequence = self._sequences.get(update.sequence_key)
        if sequence is None:
            sequence = _Sequence(update.sequence_key, update.owner)
            self._sequences[sequence.key] = sequence
        if update.start != len(sequence.tokens):
            return None  # out of step; the engine reports from 0 again only for new sequences
        sequence.tokens.extend(update.tokens)
        return sequence

    def _dispatch(self, sequence: _Sequence) -> None:
        """Make sure the sequence has its scouts, and give each idle one the new tokens."""
        wanted = self.settings.scouts_per_request
        if len(sequence.scouts) < wanted:
            for scout_id in self._candidates(sequence.owner):
                if scout_id not in sequence.scouts:
                    sequence.scouts.append(scout_id)
                    if len(sequence.scouts) == wanted:
                        break
        for scout_id in sequence.scouts:
            if scout_id not in sequence.outstanding:
                self._send_work(sequence, scout_id)

    def _candidates(self, owner: str | None) -> list[str]:
        """The owner's reserved scouts first, then unreserved ones, least loaded first."""
        load = self.load()
        own, free = [], []
        for record in self.connected:
            holder = self._reserved_by.get(record.scout_id)
            if holder is not None and holder == owner:
                own.append(record.scout_id)
            elif holder is None:
                free.append(record.scout_id)
        return sorted(own, key=lambda s: load[s]) + sorted(free, key=lambda s: load[s])

    def load(self) -> dict[str, int]:
        """Sequences each connected scout drafts for."""
        counts = {record.scout_id: 0 for record in self.connected}
        for sequence in self._sequences.values():
            for scout_id in sequence.scouts:
                if scout_id in counts:
                    counts[scout_id] += 1
        return counts

    def _send_work(self, sequence: _Sequence, scout_id: str) -> None:
        engine = self._engine()
        if engine is None:
            return
        start = sequence.synced.get(scout_id, 0)
        if start >= len(sequence.tokens):
            return
        k = max(1, min(engine.config.draft_max, MAX_DRAFT_TOKENS))
        now = time.monotonic()
        deadline_ms = self.settings.deadline_ms
        work = Work(
            seq=sequence.key,
            position=start,
            tokens=sequence.tokens[start:],
            k=k,
            deadline_ms=deadline_ms,
        )
        if self._send(scout_id, work):
            sequence.synced[scout_id] = len(sequence.tokens)
            sequence.outstanding[scout_id] = _Work(
                len(sequence.tokens), k, now, now + deadline_ms / 1000
            )
            if self._rng.random() < self.settings.golden_ticket_rate:
                self.send_ticket(scout_id, k)

    def _send(self, scout_id: str, frame: Work | Cancel | Ping) -> bool:
        record = self.records.get(scout_id)
        if record is None or not record.connected:
            return False
        if record.outbox.qsize() >= _MAX_OUTBOX:
            self._drop_soon(record, "not reading its frames")
            return False
        record.outbox.put_nowait(encode(frame))
        return True

    def _take_draft(self, record: ScoutRecord, draft: Draft) -> None:
        ticket_work = self._ticket_work.get(draft.seq)
        if ticket_work is not None and ticket_work.scout_id == record.scout_id:
            self._finish_ticket(draft.seq, draft)
            return
        if draft.seq in self._expired_tickets:
            return  # too late; already scored 0
        sequence = self._sequences.get(draft.seq)
        work = sequence.outstanding.get(record.scout_id) if sequence else None
        if sequence is None or work is None:
            if sequence is not None and record.scout_id in sequence.expired:
                sequence.expired.discard(record.scout_id)
                record.misses = 0  # slow, not dead
                record.log("debug", "late draft ignored")
                return
            record.unsolicited += 1
            if record.unsolicited > self.settings.max_unsolicited:
                raise ProtocolError("drafts for work it was never given (flooding)", CLOSE_DROPPED)
            return
        engine = self._engine()
        n_vocab = engine.n_vocab if engine is not None else 0
        if draft.position < work.position and record.scout_id in sequence.expired:
            record.misses = 0  # an answer to work that expired: slow, not dead
            record.log("debug", "late draft ignored")
            return
        if draft.position != work.position:
            raise ProtocolError(
                f"draft for position {draft.position}, work was for {work.position}", CLOSE_DROPPED
            )
        if len(draft.tokens) > work.k:
            raise ProtocolError(f"{len(draft.tokens)} draft tokens, {work.k} asked", CLOSE_DROPPED)
        if any(not 0 <= token < n_vocab for token in draft.tokens):
            raise ProtocolError("draft token id outside the vocabulary", CLOSE_DROPPED)
        del sequence.outstanding[record.scout_id]
        record.tasks_completed += 1
        record.misses = 0
        record.latency_ms_total += (time.monotonic() - work.sent_at) * 1000
        if engine is not None and draft.tokens:
            scout_draft = ScoutDraft(record.scout_id, draft.position, tuple(draft.tokens))
            engine.scout_drafts.offer(sequence.key, scout_draft)
        if len(sequence.tokens) > sequence.synced.get(record.scout_id, 0):
            self._send_work(sequence, record.scout_id)

    def _resync(self, record: ScoutRecord, key: str) -> None:
        sequence = self._sequences.get(key)
        if sequence is None or record.scout_id not in sequence.scouts:
            return
        sequence.synced[record.scout_id] = 0
        sequence.outstanding.pop(record.scout_id, None)
        record.log("debug", "resync requested")
        self._send_work(sequence, record.scout_id)

    def _score(self, outcome: DraftOutcome) -> None:
        record = self.records.get(outcome.scout_id or "")
        if record is None:
            return
        record.draft_tokens += outcome.proposed
        record.accepted_tokens += outcome.accepted
        self.trust.record_drafts(record.key_id, outcome.proposed, outcome.accepted)
        settings = self.settings
        if (
            record.connected
            and record.draft_tokens >= settings.judge_after_tokens
            and record.accepted_tokens < settings.min_acceptance * record.draft_tokens
        ):
            self._drop_soon(record, f"drafts accepted {record.acceptance_rate:.1%} of the time")

    # -- golden tickets ---------------------------------------------------------------------------

    def send_ticket(
        self, scout_id: str, k: int, result: "asyncio.Future[TicketResult] | None" = None
    ) -> bool:
        """Send a golden ticket as ordinary work; False when none can go out now."""
        if result is None and any(w.scout_id == scout_id for w in self._ticket_work.values()):
            return False
        ticket = self.tickets.draw(k, self._rng)
        if ticket is None:
            return False
        deadline_ms = self.settings.deadline_ms
        work = Work(
            seq=ticket.sequence_key,
            position=0,
            tokens=list(ticket.context),
            k=len(ticket.expected),
            deadline_ms=deadline_ms,
        )
        now = time.monotonic()
        if not self._send(scout_id, work):
            return False
        self._ticket_work[ticket.sequence_key] = _TicketWork(
            scout_id, ticket, now, now + deadline_ms / 1000, result
        )
        return True

    def _finish_ticket(self, key: str, draft: Draft | None) -> None:
        """Score a ticket's answer (None: no answer in time) into the key's reputation."""
        work = self._ticket_work.pop(key)
        ticket = work.ticket
        drafted = tuple(draft.tokens) if draft is not None else ()
        right_place = draft is not None and draft.position == len(ticket.context)
        score = ticket.score(list(drafted)) if right_place else 0.0
        latency = (time.monotonic() - work.sent_at) * 1000 if draft is not None else None
        self._send(work.scout_id, Cancel(seq=key))
        if work.result is not None and not work.result.done():
            work.result.set_result(TicketResult(ticket.expected, drafted, score, latency))
        record = self.records.get(work.scout_id)
        if record is None:
            return
        record.log("debug", f"golden ticket scored {score:.2f}")
        if self.trust.record_ticket(record.key_id, score):
            reason = self.trust.reputation(record.key_id).ban_reason
            for scout in self.connected:
                if scout.key_id == record.key_id:
                    scout.log("error", f"banned: {reason}")
                    asyncio.get_running_loop().create_task(
                        self._drop(scout, f"banned: {reason}", CLOSE_BANNED)
                    )

    async def run_tickets(self, scout_id: str, count: int) -> list[TicketResult]:
        """Test a connected scout now with `count` golden tickets, one after another."""
        scheduler = self._scheduler()
        if scheduler is not None and scheduler.ready:
            self.tickets.fill_when_idle(scheduler)
        if not await self.tickets.wait_ready(120):
            raise ReservationError(503, "The golden tickets are not ready yet.")
        engine = self._engine()
        k = max(1, min(engine.config.draft_max if engine else 8, MAX_DRAFT_TOKENS))
        results = []
        for _ in range(count):
            record = self.records.get(scout_id)
            if record is None or not record.connected:
                break
            future: asyncio.Future[TicketResult] = asyncio.get_running_loop().create_future()
            if not self.send_ticket(scout_id, k, future):
                break
            results.append(await asyncio.wait_for(future, self.settings.deadline_ms / 1000 + 5))
        return results

    # -- deadlines and pings --------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        last_ping = time.monotonic()
        nonce = 0
        while True:
            await asyncio.sleep(_TICK_S)
            try:
                now = time.monotonic()
                self._expire_work(now)
                if int(now) != int(now - _TICK_S):
                    self.trust.flush()
                if now - last_ping >= self.settings.ping_interval_s:
                    last_ping, nonce = now, nonce + 1
                    self._ping(now, nonce)
                    self.refresh_reservations()
            except Exception:  # the ticker must outlive any one bad state
                log.exception("swarm tick failed")

    def _expire_work(self, now: float) -> None:
        for key, ticket_work in list(self._ticket_work.items()):
            if now >= ticket_work.deadline:
                self._expired_tickets.append(key)
                self._finish_ticket(key, None)
        for sequence in self._sequences.values():
            for scout_id, work in list(sequence.outstanding.items()):
                if now < work.deadline:
                    continue
                del sequence.outstanding[scout_id]
                sequence.expired.add(scout_id)
                record = self.records.get(scout_id)
                if record is None:
                    continue
                record.tasks_failed += 1
                record.misses += 1
                record.log("warning", f"missed the {self.settings.deadline_ms} ms deadline")
                if record.misses >= self.settings.max_misses:
                    self._drop_soon(record, f"missed {record.misses} deadlines in a row")

    def _ping(self, now: float, nonce: int) -> None:
        silent_for = 3 * self.settings.ping_interval_s
        for record in self.connected:
            if now - record.last_seen > silent_for:
                self._drop_soon(record, f"silent for {silent_for:.0f} s")
            else:
                self._send(record.scout_id, Ping(nonce=nonce))

    # -- reservations -----------------------------------------------------------------------------

    def refresh_reservations(self) -> None:
        """Reload which scouts are held (expiry happens by time, so this runs on each tick)."""
        reserved: dict[str, str] = {}
        for reservation in self._reservations.active():
            for scout_id in reservation.scout_ids:
                reserved[scout_id] = reservation.key_id
        self._reserved_by = reserved

    def reserve(
        self, key: KeyRecord, scout_id: str | None, count: int, seconds: int
    ) -> Reservation:
        self.refresh_reservations()
        if scout_id is not None:
            record = self.records.get(scout_id)
            if record is None or not record.connected:
                raise ReservationError(404, f"No connected scout with id '{scout_id}'.", "scout_id")
            holder = self._reserved_by.get(scout_id)
            if holder is not None and holder != key.id:
                raise ReservationError(409, f"Scout '{scout_id}' is reserved by another key.")
            chosen = [scout_id]
        else:
            free = [s for s in self._candidates(None) if s not in self._reserved_by]
            if len(free) < count:
                raise ReservationError(503, f"{len(free)} scouts are free; {count} were asked for.")
            chosen = free[:count]
        reservation = self._reservations.create(key.id, chosen, seconds)
        for chosen_id in chosen:
            self.records[chosen_id].log("info", f"reserved until {reservation.expires_at}")
        self.refresh_reservations()
        return reservation

    def end_reservation(self, key: KeyRecord, reservation_id: str, cancel: bool) -> Reservation:
        """Release (in-flight drafts finish) or cancel (they are dropped) a reservation."""
        found = self._reservations.get(reservation_id)
        if found is None or (found.key_id != key.id and not key.is_admin):
            raise ReservationError(
                404, f"No reservation with id '{reservation_id}'.", "reservation_id"
            )
        ended = self._reservations.end(reservation_id, "cancelled" if cancel else "released")
        assert ended is not None
        self.refresh_reservations()
        if cancel:
            self._drop_reserved_work(found)
        return ended

    def _drop_reserved_work(self, reservation: Reservation) -> None:
        engine = self._engine()
        for sequence in self._sequences.values():
            if sequence.owner != reservation.key_id:
                continue
            for scout_id in reservation.scout_ids:
                if scout_id in sequence.scouts:
                    sequence.scouts.remove(scout_id)
                    sequence.outstanding.pop(scout_id, None)
                    self._send(scout_id, Cancel(seq=sequence.key))
                    latest = engine.scout_drafts.latest(sequence.key) if engine else None
                    if engine is not None and latest is not None and latest.scout_id == scout_id:
                        engine.scout_drafts.discard(sequence.key)

    # -- figures --------------------------------------------------------------------------------

    def statuses(self) -> list[dict[str, object]]:
        """Every known scout's status (one pass over the sequences for all their loads)."""
        loads = self.load()
        return [self.status_of(record, loads) for record in self.records.values()]

    def status_of(
        self, record: ScoutRecord, loads: dict[str, int] | None = None
    ) -> dict[str, object]:
        load = (loads if loads is not None else self.load()).get(record.scout_id, 0)
        reputation = self.trust.reputation(record.key_id)
        golden, live = reputation.golden, reputation.live
        state = record.status
        if record.connected:
            state = "busy" if load else "idle"
        return {
            "id": record.scout_id,
            "status": state,
            "connected": record.connected,
            "reserved": record.scout_id in self._reserved_by,
            "draft_model": record.draft_model,
            "load": load,
            "tasks_completed": record.tasks_completed,
            "tasks_failed": record.tasks_failed,
            "avg_latency_ms": record.avg_latency_ms,
            "uptime_seconds": round(time.time() - record.connected_at, 1)
            if record.connected
            else 0.0,
            "connected_at": datetime.fromtimestamp(record.connected_at, UTC).isoformat(),
            "acceptance_rate": record.acceptance_rate,
            "draft_tokens": record.draft_tokens,
            "accepted_tokens": record.accepted_tokens,
            "key_id": record.key_id,
            "reputation": round(reputation.score, 4),
            "golden_tickets": reputation.tickets,
            "golden_ticket_score": None if golden is None else round(golden, 4),
            "live_acceptance_rate": None if live is None else round(live, 4),
            "banned": reputation.banned(datetime.now(UTC)),
        }

    def logs_of(
        self, record: ScoutRecord, limit: int, level: str | None
    ) -> list[dict[str, object]]:
        floor = LOG_LEVELS.index(level) if level else 0
        entries = [e for e in record.logs if LOG_LEVELS.index(e.level) >= floor]
        return [
            {
                "timestamp": datetime.fromtimestamp(e.timestamp, UTC).isoformat(),
                "level": e.level,
                "message": e.message,
            }
            for e in entries[-limit:]
        ]
