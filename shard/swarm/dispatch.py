"""Which scout drafts for which sequence, the work they are sent, and the drafts that come back.

The engine reports each step's new tokens and draft outcomes (`on_reports`, on the event
loop). Each sequence gets its scouts (the owner's reserved ones first, then free ones, least
loaded first), and each scout with no work outstanding gets the tokens it has not seen. A
draft must answer the work it was given (its position, at most k tokens, ids in the
vocabulary) before it reaches the engine's draft sink, which the engine reads without
waiting (docs/architecture.md, invariant 4); one that cannot be an honest answer raises
ProtocolError, and the session drops its scout. Work unanswered by its deadline is a miss.

Phantom sequences (`phantoms.py`) are golden tickets that go through all of this as live
sequences do: a scout given a new live sequence is, at `--golden-ticket-rate`, also given a
phantom (one at a time), which this module advances at the engine's pace instead of the
engine, verifying the scout's drafts against the oracle's own text and scoring them.
"""

import asyncio
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from shard.engine.types import DraftOutcome, ScoutDraft, SequenceUpdate
from shard.swarm import phantoms
from shard.swarm.engine_handle import WORK_STEPS, EngineHandle
from shard.swarm.phantoms import PhantomReplay, StepPace
from shard.swarm.protocol import CLOSE_DROPPED, Cancel, Draft, ProtocolError, Work
from shard.swarm.registry import Registry, ScoutRecord
from shard.swarm.reservations import Reservations
from shard.swarm.settings import HubSettings
from shard.swarm.tickets import Tickets
from shard.swarm.trust import Trust

_REMEMBER_ENDED = 1000

log = logging.getLogger(__name__)


@dataclass
class _Work:
    position: int
    """Where the scout's draft must start: the sequence's length when the work was sent."""
    k: int
    sent_at: float
    deadline: float


@dataclass
class _Answer:
    """A scout's latest answer in a sequence: a version-2 scout may stream more of it."""

    position: int
    k: int
    tokens: tuple[int, ...]


@dataclass(eq=False)
class _Sequence:
    key: str
    owner: str | None
    tokens: list[int] = field(default_factory=list)
    scouts: list[str] = field(default_factory=list)
    synced: dict[str, int] = field(default_factory=dict)
    """How many of the tokens each scout has been sent."""
    outstanding: dict[str, _Work] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)
    """Scouts whose last work here passed its deadline (a late answer is not their fault)."""
    answers: dict[str, _Answer] = field(default_factory=dict)
    phantom: PhantomReplay | None = None
    """Set for a phantom sequence: the dispatch, not the engine, decides its tokens."""
    offered: tuple[int, tuple[int, ...]] | None = None
    """A phantom's latest draft with tokens (position, tokens): what the engine's draft
    sink would hold for a live sequence."""


class Dispatch:
    def __init__(
        self,
        settings: HubSettings,
        registry: Registry,
        reservations: Reservations,
        tickets: Tickets,
        trust: Trust,
        engine: EngineHandle,
        rng: random.Random,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._reservations = reservations
        self._tickets = tickets
        self._trust = trust
        self._engine = engine
        self._rng = rng
        self._sequences: dict[str, _Sequence] = {}
        self._ended: deque[str] = deque(maxlen=_REMEMBER_ENDED)
        """Sequences that ended lately: a draft for one was in flight, not flooding."""
        self.pace = StepPace()
        self._phantom_tasks: set[asyncio.Task[None]] = set()
        self._phantoms_due: set[str] = set()
        """Scouts a phantom will start for after its random delay."""

    # -- the engine's reports --------------------------------------------------------------------

    def on_reports(self, reports: Sequence[object]) -> None:
        """EngineClient listener: new tokens of running sequences, ends, and draft outcomes."""
        touched: dict[str, _Sequence] = {}
        if any(isinstance(report, SequenceUpdate) and not report.ended for report in reports):
            self.pace.step_seen(time.monotonic())
        for report in reports:
            if isinstance(report, DraftOutcome):
                self._score(report)
            elif isinstance(report, SequenceUpdate):
                sequence = self._update_sequence(report)
                if sequence is not None:
                    touched[sequence.key] = sequence
        if self._registry.connected:
            for sequence in touched.values():
                self._dispatch(sequence)

    def _update_sequence(self, update: SequenceUpdate) -> _Sequence | None:
        if update.ended:
            sequence = self._sequences.pop(update.sequence_key, None)
            self._ended.append(update.sequence_key)
            engine = self._engine.ready()
            if engine is not None:  # a draft that came after the engine let it go
                engine.drafts.discard(update.sequence_key)
            if sequence is not None:
                for scout_id in sequence.scouts:
                    self._registry.send(scout_id, Cancel(seq=sequence.key))
            return None
        sequence = self._sequences.get(update.sequence_key)
        if sequence is None:
            sequence = _Sequence(update.sequence_key, update.owner)
            self._sequences[sequence.key] = sequence
        if update.start != len(sequence.tokens):
            return None  # out of step; the engine reports from 0 again only for new sequences
        sequence.tokens.extend(update.tokens)
        return sequence

    def _score(self, outcome: DraftOutcome) -> None:
        """Credit a scout's timely draft tokens (ahead of the oracle when a step was planned);
        judge it on all of them, late ones too, and drop it once found useless."""
        record = self._registry.get(outcome.scout_id or "")
        if record is None:
            return
        record.judged_tokens += outcome.proposed
        record.judged_accepted += outcome.accepted
        if outcome.timely:
            record.draft_tokens += outcome.proposed
            record.accepted_tokens += outcome.accepted
            self._trust.record_drafts(record.key_id, outcome.proposed, outcome.accepted)
        settings = self._settings
        if (
            record.connected
            and record.judged_tokens >= settings.judge_after_tokens
            and record.judged_accepted < settings.min_acceptance * record.judged_tokens
        ):
            rate = record.judged_accepted / record.judged_tokens
            self._registry.drop_soon(record, f"drafts accepted {rate:.1%} of the time")

    # -- work out ------------------------------------------------------------------------------

    def _dispatch(self, sequence: _Sequence) -> None:
        """Make sure the sequence has its scouts, and give each idle one the new tokens."""
        wanted = self._settings.scouts_per_request
        if len(sequence.scouts) < wanted:
            for scout_id in self.candidates(sequence.owner):
                if scout_id not in sequence.scouts:
                    sequence.scouts.append(scout_id)
                    if self._rng.random() < self._settings.golden_ticket_rate:
                        self._phantom_soon(scout_id)
                    if len(sequence.scouts) == wanted:
                        break
        for scout_id in sequence.scouts:
            if scout_id not in sequence.outstanding:
                self._send_work(sequence, scout_id)

    def candidates(self, owner: str | None) -> list[str]:
        """The owner's reserved scouts first, then unreserved ones, least loaded first (ties
        in random order, so idle scouts share the work)."""
        load = self.load()
        own, free = [], []
        for record in self._registry.connected:
            holder = self._reservations.holder(record.scout_id)
            if holder is not None and holder == owner:
                own.append(record.scout_id)
            elif holder is None:
                free.append(record.scout_id)
        ties = {scout_id: self._rng.random() for scout_id in load}  # spread, not first-come

        def order(scout_id: str) -> tuple[int, float]:
            return load[scout_id], ties[scout_id]

        return sorted(own, key=order) + sorted(free, key=order)

    def load(self) -> dict[str, int]:
        """Sequences each connected scout drafts for."""
        counts = {record.scout_id: 0 for record in self._registry.connected}
        for sequence in self._sequences.values():
            for scout_id in sequence.scouts:
                if scout_id in counts:
                    counts[scout_id] += 1
        return counts

    def _send_work(self, sequence: _Sequence, scout_id: str) -> None:
        k = self._engine.draft_k()
        if k is None:
            return
        start = sequence.synced.get(scout_id, 0)
        if start >= len(sequence.tokens):
            return
        now = time.monotonic()
        deadline_ms = self._settings.deadline_ms
        work = Work(
            seq=sequence.key,
            position=start,
            tokens=sequence.tokens[start:],
            k=k,
            deadline_ms=deadline_ms,
        )
        if self._registry.send(scout_id, work):
            sequence.synced[scout_id] = len(sequence.tokens)
            sequence.outstanding[scout_id] = _Work(
                len(sequence.tokens), k, now, now + deadline_ms / 1000
            )

    # -- drafts in -----------------------------------------------------------------------------

    def take_draft(self, record: ScoutRecord, draft: Draft) -> None:
        """Check a draft against its work and hand it to the engine; ProtocolError when it
        cannot be an honest answer."""
        sequence = self._sequences.get(draft.seq)
        if sequence is not None and self._streamed(record, sequence, draft):
            return
        work = sequence.outstanding.get(record.scout_id) if sequence else None
        if sequence is None or work is None:
            if sequence is not None and record.scout_id in sequence.expired:
                sequence.expired.discard(record.scout_id)
                self._late(record)
                return
            if draft.seq in self._ended:
                return  # answered work for a sequence that has just ended
            record.unsolicited += 1
            if record.unsolicited > self._settings.max_unsolicited:
                raise ProtocolError("drafts for work it was never given (flooding)", CLOSE_DROPPED)
            return
        if draft.position < work.position and record.scout_id in sequence.expired:
            self._late(record)  # an answer to work that expired
            return
        if draft.position != work.position:
            raise ProtocolError(
                f"draft for position {draft.position}, work was for {work.position}", CLOSE_DROPPED
            )
        self._check_tokens(draft, work.k)
        del sequence.outstanding[record.scout_id]
        record.tasks_completed += 1
        record.misses = 0
        record.latency_ms_total += (time.monotonic() - work.sent_at) * 1000
        sequence.answers[record.scout_id] = _Answer(draft.position, work.k, tuple(draft.tokens))
        self._offer(record, sequence, draft)
        if len(sequence.tokens) > sequence.synced.get(record.scout_id, 0):
            self._send_work(sequence, record.scout_id)

    def _streamed(self, record: ScoutRecord, sequence: _Sequence, draft: Draft) -> bool:
        """Whether the draft streams more of a version-2 scout's latest answer here (then
        it is checked and offered); ProtocolError when it does not extend that answer."""
        answer = sequence.answers.get(record.scout_id)
        if record.protocol_version < 2 or answer is None or draft.position != answer.position:
            return False
        sent = len(answer.tokens)
        if len(draft.tokens) <= sent or tuple(draft.tokens[:sent]) != answer.tokens:
            raise ProtocolError("a streamed draft must extend the one before it", CLOSE_DROPPED)
        self._check_tokens(draft, answer.k)
        answer.tokens = tuple(draft.tokens)
        self._offer(record, sequence, draft)
        return True

    def _check_tokens(self, draft: Draft, k: int) -> None:
        if len(draft.tokens) > k:
            raise ProtocolError(f"{len(draft.tokens)} draft tokens, {k} asked", CLOSE_DROPPED)
        status = self._engine.status()
        n_vocab = status.n_vocab if status is not None else 0
        if any(not 0 <= token < n_vocab for token in draft.tokens):
            raise ProtocolError("draft token id outside the vocabulary", CLOSE_DROPPED)

    def _offer(self, record: ScoutRecord, sequence: _Sequence, draft: Draft) -> None:
        """Hand the draft to the engine's sink (it replaces the sequence's last one); a
        phantom's is kept for its next step."""
        if sequence.phantom is not None:
            if draft.tokens:
                sequence.offered = (draft.position, tuple(draft.tokens))
                told = sequence.synced.get(record.scout_id, 0)
                score = sequence.phantom.arrived(sequence.offered, told, time.monotonic())
                if score is not None:
                    self._tickets.score(record.scout_id, score)
            return
        engine = self._engine.ready()
        if engine is not None and draft.tokens:
            scout_draft = ScoutDraft(record.scout_id, draft.position, tuple(draft.tokens))
            engine.drafts.offer(sequence.key, scout_draft)

    @staticmethod
    def _late(record: ScoutRecord) -> None:
        record.misses = 0  # slow, not dead
        record.log("debug", "late draft ignored")

    def resync(self, record: ScoutRecord, key: str) -> None:
        """The scout lost the sequence's state: send it the whole history again."""
        sequence = self._sequences.get(key)
        if sequence is None or record.scout_id not in sequence.scouts:
            return
        sequence.synced[record.scout_id] = 0
        sequence.outstanding.pop(record.scout_id, None)
        record.log("debug", "resync requested")
        self._send_work(sequence, record.scout_id)

    # -- phantom sequences -----------------------------------------------------------------------

    def _phantom_soon(self, scout_id: str) -> None:
        """Start a phantom for the scout after a random delay, so it does not arrive with
        the live sequence that prompted it."""
        if scout_id not in self._phantoms_due:
            self._phantoms_due.add(scout_id)
            delay = self._rng.uniform(0, phantoms.START_DELAY_S)
            asyncio.get_running_loop().call_later(delay, self._start_phantom, scout_id)

    def _start_phantom(self, scout_id: str) -> None:
        """Give the scout a phantom sequence, unless it has one, has left, or no fresh text
        is ready."""
        self._phantoms_due.discard(scout_id)
        record = self._registry.get(scout_id)
        if record is None or not record.connected:
            return
        if any(
            sequence.phantom is not None and scout_id in sequence.scouts
            for sequence in self._sequences.values()
        ):
            return
        completion = self._tickets.book.take_fresh()
        self._tickets.fill_when_idle()  # write the next one while idle
        if completion is None:
            return
        phantom = PhantomReplay(completion, time.monotonic())
        sequence = _Sequence(secrets.token_hex(8), None, phantom.tokens, [scout_id])
        sequence.phantom = phantom
        self._sequences[sequence.key] = sequence
        self._send_work(sequence, scout_id)
        task = asyncio.create_task(self._replay(sequence, scout_id, phantom))
        self._phantom_tasks.add(task)
        task.add_done_callback(self._phantom_tasks.discard)

    async def _replay(self, sequence: _Sequence, scout_id: str, phantom: PhantomReplay) -> None:
        """Step the phantom at the engine's pace until it ends or its scout leaves."""
        try:
            while self._sequences.get(sequence.key) is sequence and scout_id in sequence.scouts:
                await asyncio.sleep(self.pace.seconds)
                if self._sequences.get(sequence.key) is not sequence:
                    return
                k = self._engine.draft_k() or 0
                step = phantom.step(
                    sequence.offered,
                    max(k // WORK_STEPS, 1),
                    time.monotonic(),
                    self._settings.deadline_ms / 1000,
                )
                if step.score is not None:
                    self._tickets.score(scout_id, step.score)
                sequence.tokens.extend(step.new_tokens)
                if scout_id not in sequence.outstanding and scout_id in sequence.scouts:
                    self._send_work(sequence, scout_id)  # the last tokens too, as live
                if step.done:
                    break
        except Exception:  # a phantom must never take the hub down
            log.exception("phantom sequence failed")
        finally:
            if self._sequences.get(sequence.key) is sequence:
                self._update_sequence(SequenceUpdate(sequence.key, None, 0, (), ended=True))

    # -- deadlines, departures -------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Count work past its deadline as missed; too many misses in a row drop the scout."""
        for sequence in self._sequences.values():
            for scout_id, work in list(sequence.outstanding.items()):
                if now < work.deadline:
                    continue
                del sequence.outstanding[scout_id]
                sequence.expired.add(scout_id)
                record = self._registry.get(scout_id)
                if record is None:
                    continue
                record.tasks_failed += 1
                record.misses += 1
                record.log("warning", f"missed the {self._settings.deadline_ms} ms deadline")
                if record.misses >= self._settings.max_misses:
                    self._registry.drop_soon(record, f"missed {record.misses} deadlines in a row")

    def forget_scout(self, scout_id: str) -> None:
        """The scout left: its sequences go to others at their next step."""
        for sequence in self._sequences.values():
            if scout_id in sequence.scouts:
                sequence.scouts.remove(scout_id)
            sequence.synced.pop(scout_id, None)
            sequence.outstanding.pop(scout_id, None)

    def withdraw(self, owner: str, scout_ids: Sequence[str]) -> None:
        """A cancelled reservation: its scouts stop drafting for the owner's sequences, and
        their drafts not yet used are dropped."""
        engine = self._engine.ready()
        for sequence in self._sequences.values():
            if sequence.owner != owner:
                continue
            for scout_id in scout_ids:
                if scout_id not in sequence.scouts:
                    continue
                sequence.scouts.remove(scout_id)
                sequence.outstanding.pop(scout_id, None)
                self._registry.send(scout_id, Cancel(seq=sequence.key))
                latest = engine.drafts.latest(sequence.key) if engine is not None else None
                if engine is not None and latest is not None and latest.scout_id == scout_id:
                    engine.drafts.discard(sequence.key)

    def clear(self) -> None:
        """Forget every sequence (the engine is restarting); phantoms stop at their next
        step."""
        self._sequences.clear()
