"""Planning a step's drafts: which proposal each sequence offers, one draft length for all,
and the timings that length is weighed against (docs/architecture.md, "Speculation")."""

import time
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from shard.engine.model import Model, TokenBatch
from shard.engine.spec.calibration import CalibrationCache
from shard.engine.spec.proposers import NO_PROPOSAL, Proposal
from shard.engine.spec.step_cost import CALIBRATION_SIZES, DraftGate, StepCost, best_draft_length

Offerer = TypeVar("Offerer")
"""Whoever made the proposal: a `Proposer` in the engine, anything in a test."""


def best_offer(offers: Sequence[tuple[Offerer, Proposal]]) -> tuple[Offerer | None, Proposal]:
    """The offer with the most tokens expected to be accepted (the first on a tie); empty
    proposals are no offer."""
    real = [(proposer, proposal) for proposer, proposal in offers if proposal.tokens]
    return max(real, key=lambda offer: sum(offer[1].chances), default=(None, NO_PROPOSAL))


def padded_draft(tokens: list[int], k: int, room: int, next_token: int) -> list[int]:
    """k draft tokens (all sequences take the same number, so the batch stays one graph
    run), padded with guesses that gain nothing, cut to what the sequence has room for."""
    filler = tokens[-1] if tokens else next_token
    return (tokens[:k] + [filler] * k)[: min(k, room)]


class DraftPlanner:
    """One draft length per step, from this machine's measured decode costs."""

    def __init__(self) -> None:
        self.cost = StepCost()
        self.gate = DraftGate()

    def draft_length(self, proposals: list[Proposal]) -> int:
        """The k that most raises expected tokens per second and slows no sequence; 0 when
        drafting has been measured to lose at this many sequences."""
        if not self.gate.allows(len(proposals)):
            return 0
        return best_draft_length([proposal.chances for proposal in proposals], self.cost)

    def observe(
        self, sequences: int, drafted: bool, tokens: int, seconds: float, batch_size: int | None
    ) -> None:
        """A decode-only step made `tokens` in `seconds`; `batch_size` is given when the step
        was one sub-batch (every sequence with as many draft tokens), what k is weighed by."""
        self.gate.observe(sequences, drafted, tokens, seconds)
        if batch_size is not None:
            self.cost.observe(batch_size, seconds)

    def calibrate(
        self,
        model: Model,
        batch: TokenBatch,
        limit: int,
        cache: CalibrationCache | None = None,
        key: str = "",
    ) -> None:
        """Time decodes of a few sizes (every token with logits, as in verification) so the
        first drafts are weighed against this machine's real costs; or take the timings
        measured at an earlier start with the same `key`."""
        sizes = [s for s in CALIBRATION_SIZES if s <= limit]
        known = cache.load(key) if cache is not None else None
        if known is not None and set(sizes) <= set(known):
            for size in sizes:
                self.cost.observe(size, known[size])
            return
        self._measure(model, batch, sizes)
        if cache is not None:
            cache.save(key, self.cost.measured())

    def _measure(self, model: Model, batch: TokenBatch, sizes: list[int]) -> None:
        for size in sizes:
            elapsed = 0.0
            for _ in range(2):  # the first run of a size warms it up
                batch.clear()
                for position in range(size):
                    batch.add(model.bos_token, position, 0, True)
                started = time.perf_counter()
                model.decode(batch)
                for index in range(size):  # as verification reads every token's logits
                    int(np.argmax(model.logits(index)))
                elapsed = time.perf_counter() - started
                model.forget(0)
            self.cost.observe(size, elapsed)
        batch.clear()
