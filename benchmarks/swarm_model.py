"""A small model of the swarm: predicts tokens/s of an oracle verifying one scout's drafts from
measured costs, so the testbed can check it and it can then speak for machines we do not have.

It is a discrete-event simulation of what Shard does, not a formula:

- The oracle runs steps back to back. A step over `c` sequences, each verifying `d` draft
  tokens, costs `step_s(c, d + 1)` (measured). Each sequence gains its accepted prefix plus
  one token of the oracle's own.
- The scout drafts one token at a time, `1 / scout_tok_s` each, for the sequence that is least
  far ahead (up to `ahead` tokens), as if its drafts were accepted, and streams them every
  `stream_batch` tokens. The oracle's decisions reach the scout `news_delay_s` after its
  step (a work frame); the scout answers at once with what it holds. What it sends arrives
  `draft_delay_s` later.
- Each draft token is accepted with probability `acceptance`, independently (the measured
  rate; a wrong token ends the run). After a rejection the scout throws away what it drafted
  past it, once it hears of it, and drafts again from there.
- The oracle never waits: a step uses the drafted tokens that have arrived when it starts,
  as many for every sequence (`draft_length`, what Shard's planner does).

What it leaves out (and so where it can be wrong): the scout's drafts are not all equally
likely to be right (acceptance falls along a draft), CPU contention between oracle and scout,
the event loop's and the network's jitter, and the planner's choice of k (it verifies what
is there, up to `k`, as Shard's planner would with the true acceptance).
"""

import random
from collections.abc import Callable
from dataclasses import dataclass, field

StepCost = Callable[[int, int], float]
"""Seconds of one oracle step over `sequences` sequences of `rows` tokens each."""


@dataclass(frozen=True)
class SwarmCase:
    """One configuration to predict."""

    sequences: int
    """Concurrent requests, all served by the one scout."""
    step_s: StepCost
    scout_tok_s: float
    """The scout's standalone greedy decode rate, one token at a time."""
    draft_delay_s: float
    """From the scout making a draft token to the oracle having it (network, one way)."""
    news_delay_s: float
    """From an oracle step to the scout hearing what it decided (network, one way)."""
    acceptance: float
    """Chance that a draft token is the one the oracle picks."""
    k: int = 16
    """Most draft tokens verified per sequence per step (and how far ahead the scout drafts)."""
    ahead: int = 32
    """How far past what it has heard the scout drafts (the work frame's k: two steps' worth,
    so that an answer still covers the step after a fully accepted one)."""
    stream_batch: int = 4
    """Tokens per streamed frame (the scout's STREAM_BATCH); held tokens also go out with
    the answer to the next work, and when the scout has nothing left to draft."""
    padded: bool = False
    """A lone sequence's steps carry a second row with logits (builds where one row takes
    another kernel than several)."""
    scout: bool = True


@dataclass
class _Sequence:
    decided: int = 0
    """Tokens the oracle has decided (the oracle's side)."""
    epoch: int = 0
    """Bumped when the scout's run turns out wrong: its later tokens are worthless."""
    run: list[tuple[int, float, bool]] = field(default_factory=list)
    """The scout's current run: (position, arrival at the oracle, right), consecutive."""
    run_epoch: int = 0
    known: int = 0
    """How many tokens the scout has heard are decided (the scout's side)."""
    next_position: int = 0
    """Where the scout's next draft token goes."""


def simulate(case: SwarmCase, tokens: int = 2000, seed: int = 0) -> float:
    """Tokens per second over all sequences until each has `tokens` tokens."""
    rng = random.Random(seed)
    sequences = [_Sequence() for _ in range(case.sequences)]
    scout = _Scout(case, sequences, rng)
    now = 0.0
    while min(s.decided for s in sequences) < tokens:
        if case.scout:
            scout.work_until(now)
        usable = [_usable(sequence, now, case.k) for sequence in sequences]
        k = draft_length(case, min(len(u) for u in usable))
        usable = [u[:k] for u in usable]
        rows = 1 + k
        if rows == 1 and case.sequences == 1 and case.padded:
            rows = 2
        now += case.step_s(case.sequences, rows)
        for index, (sequence, drafts) in enumerate(zip(sequences, usable, strict=True)):
            accepted = 0
            while accepted < len(drafts) and drafts[accepted]:
                accepted += 1
            sequence.decided += accepted + 1
            scout.tell(now + case.news_delay_s, index, sequence.epoch, sequence.decided)
    return sum(s.decided for s in sequences) / now


def draft_length(case: SwarmCase, available: int, margin: float = 0.1) -> int:
    """What Shard's planner picks (spec/step_cost.py): every sequence verifies the same k, no
    more than all of them have; the k with the most expected tokens per second, if it beats
    no drafts by `margin`. Expected tokens use the true acceptance (Shard estimates it)."""
    plain_rows = 2 if case.sequences == 1 and case.padded else 1
    best_k, best = 0, case.sequences / case.step_s(case.sequences, plain_rows) * (1 + margin)
    for k in range(1, available + 1):
        expected = 1 + sum(case.acceptance**j for j in range(1, k + 1))
        rate = case.sequences * expected / case.step_s(case.sequences, 1 + k)
        if rate > best:
            best_k, best = k, rate
    return best_k


def _usable(sequence: _Sequence, now: float, k: int) -> list[bool]:
    """The run's tokens from the first undecided position on that have arrived (up to k);
    a run found wrong at a decided position is dead (a new epoch)."""
    if sequence.run_epoch != sequence.epoch:
        return []
    drafts: list[bool] = []
    kept = []
    for token in sequence.run:
        position, arrival, right = token
        if position < sequence.decided:
            if not right:
                sequence.epoch += 1
                return []
            continue
        kept.append(token)
        if position == sequence.decided + len(drafts) and arrival <= now and len(drafts) < k:
            drafts.append(right)
    sequence.run = kept
    if drafts and not all(drafts):
        sequence.epoch += 1  # verified wrong now: what follows it is worthless
        return drafts[: drafts.index(False) + 1]
    return drafts


class _Scout:
    """Drafts one token at a time for the sequence least far ahead of what it has heard. A
    token is sent with the answer to the next work frame (the news of an oracle step)."""

    def __init__(self, case: SwarmCase, sequences: list[_Sequence], rng: random.Random) -> None:
        self.case = case
        self.sequences = sequences
        self.rng = rng
        self.free_at = 0.0
        self.news: list[tuple[float, int, int, int]] = []
        """(when the scout hears it, sequence, epoch, decided) of the oracle's steps."""
        self.epochs = [0] * len(sequences)
        self.heard_at = [0.0] * len(sequences)

    def tell(self, when: float, index: int, epoch: int, decided: int) -> None:
        self.news.append((when, index, epoch, decided))

    def work_until(self, until: float) -> None:
        """Hear and draft until `until` (the last token may finish after it)."""
        per_token = 1.0 / self.case.scout_tok_s
        while True:
            self._hear(self.free_at)
            index = self._least_ahead()
            if index is None:  # far enough ahead everywhere: send what is held, then idle
                for held in self.sequences:
                    self._release(held, self.free_at)
                pending = [item[0] for item in self.news if item[0] <= until]
                if not pending:
                    self.free_at = max(self.free_at, until)
                    return
                self.free_at = max(self.free_at, min(pending))
                continue
            if self.free_at >= until:
                return
            sequence = self.sequences[index]
            self.free_at += per_token
            right = self.rng.random() < self.case.acceptance
            sequence.run.append((sequence.next_position, _HELD, right))
            sequence.next_position += 1
            if sum(1 for token in sequence.run if token[1] == _HELD) >= self.case.stream_batch:
                self._release(sequence, self.free_at)

    def _release(self, sequence: _Sequence, now: float) -> None:
        """Send the sequence's held tokens (a streamed frame, or an answer to work)."""
        sent = now + self.case.draft_delay_s
        sequence.run = [
            (position, sent if arrival == _HELD else arrival, right)
            for position, arrival, right in sequence.run
        ]

    def _hear(self, now: float) -> None:
        heard = [item for item in self.news if item[0] <= now]
        self.news = [item for item in self.news if item[0] > now]
        for when, index, epoch, decided in heard:
            sequence = self.sequences[index]
            self.heard_at[index] = when
            sequence.known = max(sequence.known, decided)
            if epoch != self.epochs[index]:  # its run was wrong: start again from there
                self.epochs[index] = epoch
                sequence.run, sequence.run_epoch = [], epoch
                sequence.next_position = sequence.known
            if sequence.next_position < sequence.known:  # the oracle got past it: resync
                sequence.run, sequence.next_position = [], sequence.known
            self._release(sequence, when)  # the answer to this work carries them

    def _least_ahead(self) -> int | None:
        """The scout's choice (DraftModel.run_ahead): the least far ahead of the sequences
        it is ahead on, else the one it heard of last."""
        ahead = [s.next_position - s.known for s in self.sequences]
        open_ = [i for i in range(len(ahead)) if ahead[i] < self.case.ahead]
        if not open_:
            return None
        started = [i for i in open_ if ahead[i] > 0]
        if started:
            return min(started, key=lambda i: ahead[i])
        return max(open_, key=lambda i: self.heard_at[i])


_HELD = float("inf")
"""Arrival time of a token the scout has drafted but not yet sent."""


def alone(step_s: StepCost, sequences: int, padded: bool) -> float:
    """The oracle's tokens per second with no drafts (a lone sequence padded to two rows
    where the build needs it for exact drafts)."""
    rows = 2 if padded and sequences == 1 else 1
    return sequences / step_s(sequences, rows)
