"""Golden tickets' scores into the keys' reputations, and the tickets an admin asks for.

Every score lands here (`score`): the phantom sequences' steps (`phantoms.py`, sent by the
dispatch as live work, which is how scouts are checked all the time) and the single tickets
of `run`, an admin's test of one scout now. A single ticket (from the `TicketBook`) goes out
as a work frame; its answer, or its silence past the deadline, is scored against what the
oracle itself wrote. A key whose reputation falls under the ban policy loses every connected
scout at once. Event loop only: the scores go to `Trust`'s cache, and `on_ban` asks for them
to be written now rather than at the next flush.
"""

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from shard.swarm.engine_handle import EngineHandle
from shard.swarm.errors import TicketsNotReady
from shard.swarm.golden_tickets import Ticket, TicketBook
from shard.swarm.protocol import CLOSE_BANNED, Cancel, Draft, Work
from shard.swarm.registry import Registry, ScoutRecord
from shard.swarm.trust import Trust

_FILL_TIMEOUT_S = 120
_DEFAULT_K = 8
"""Tokens a ticket asks for when the engine cannot say (it is reloading)."""


@dataclass(frozen=True)
class TicketResult:
    expected: tuple[int, ...]
    drafted: tuple[int, ...]
    score: float
    latency_ms: float | None
    """None when the scout did not answer in time."""


@dataclass
class _TicketWork:
    scout_id: str
    ticket: Ticket
    sent_at: float
    deadline: float
    result: "asyncio.Future[TicketResult]"
    streamed: Draft | None = None
    """A version-2 scout's answer so far, scored at the deadline unless it completes."""
    answered_at: float | None = None


class Tickets:
    def __init__(
        self,
        registry: Registry,
        trust: Trust,
        engine: EngineHandle,
        deadline_ms: int,
        rng: random.Random,
        on_ban: Callable[[], None] = lambda: None,
    ) -> None:
        self.book = TicketBook()
        self._registry = registry
        self._trust = trust
        self._engine = engine
        self._deadline_ms = deadline_ms
        self._rng = rng
        self._on_ban = on_ban
        self._out: dict[str, _TicketWork] = {}
        """Tickets awaiting an answer, by their sequence key."""
        self._ended: deque[str] = deque(maxlen=1000)

    def fill_when_idle(self) -> None:
        """Have the oracle complete the ticket prompts while it has nothing else to do."""
        engine = self._engine.ready()
        if engine is not None:
            self.book.fill_when_idle(engine)

    def send(self, scout_id: str, k: int, result: "asyncio.Future[TicketResult]") -> bool:
        """Send a ticket as a work frame; False when none can go out now."""
        ticket = self.book.draw(k, self._rng)
        if ticket is None:
            return False
        work = Work(
            seq=ticket.sequence_key,
            position=0,
            tokens=list(ticket.context),
            k=len(ticket.expected),
            deadline_ms=self._deadline_ms,
        )
        now = time.monotonic()
        if not self._registry.send(scout_id, work):
            return False
        deadline = now + self._deadline_ms / 1000
        self._out[ticket.sequence_key] = _TicketWork(scout_id, ticket, now, deadline, result)
        return True

    def take(self, record: ScoutRecord, draft: Draft) -> bool:
        """Score the draft if it answers one of the scout's tickets; True when the draft was
        about a ticket (a late answer to an expired one is ignored: it already scored 0)."""
        work = self._out.get(draft.seq)
        if work is not None and work.scout_id == record.scout_id:
            if work.answered_at is None:
                work.answered_at = time.monotonic()
            complete = len(draft.tokens) >= len(work.ticket.expected)
            if record.protocol_version >= 2 and not complete:
                work.streamed = draft  # more may follow until the deadline
            else:
                self._finish(draft.seq, draft)
            return True
        return draft.seq in self._ended

    def expire(self, now: float) -> None:
        """Score tickets past their deadline: what was streamed by then, else 0."""
        for key, work in list(self._out.items()):
            if now >= work.deadline:
                self._finish(key, work.streamed)

    def _finish(self, key: str, draft: Draft | None) -> None:
        """Score a ticket's answer (None: no answer in time) into the key's reputation."""
        work = self._out.pop(key)
        self._ended.append(key)  # later frames for it are ignored
        ticket = work.ticket
        drafted = tuple(draft.tokens) if draft is not None else ()
        right_place = draft is not None and draft.position == len(ticket.context)
        score = ticket.score(list(drafted)) if right_place else 0.0
        answered = work.answered_at
        latency = (answered - work.sent_at) * 1000 if draft is not None and answered else None
        self._registry.send(work.scout_id, Cancel(seq=key))
        if not work.result.done():
            work.result.set_result(TicketResult(ticket.expected, drafted, score, latency))
        self.score(work.scout_id, score)

    def score(self, scout_id: str, score: float) -> None:
        """Count one golden ticket's score for the scout's key; ban the key (closing every
        scout of it) when the policy says so."""
        record = self._registry.get(scout_id)
        if record is None:
            return
        record.log("debug", f"golden ticket scored {score:.2f}")
        ban = self._trust.record_ticket(record.key_id, score)
        if ban is None:
            return
        self._on_ban()
        for scout in self._registry.connected:
            if scout.key_id == record.key_id:
                scout.log("error", f"banned: {ban}")
                self._registry.drop_soon(scout, f"banned: {ban}", CLOSE_BANNED)

    async def run(self, scout_id: str, count: int) -> list[TicketResult]:
        """Test a connected scout now with `count` tickets, one after another; fewer when
        it leaves (or is banned) on the way."""
        self.fill_when_idle()
        if not await self.book.wait_ready(_FILL_TIMEOUT_S):
            raise TicketsNotReady()
        k = self._engine.draft_k() or _DEFAULT_K
        results = []
        for _ in range(count):
            record = self._registry.get(scout_id)
            if record is None or not record.connected:
                break
            future: asyncio.Future[TicketResult] = asyncio.get_running_loop().create_future()
            if not self.send(scout_id, k, future):
                break
            results.append(await asyncio.wait_for(future, self._deadline_ms / 1000 + 5))
        return results
