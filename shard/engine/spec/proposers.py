"""Draft sources, one shape for all (as vLLM's proposers): `propose` a draft for a sequence,
hear how it fared, forget the sequence when it ends.

Each proposer keeps its own per-sequence state, keyed by the sequence's key, and runs only
on the engine thread. What a proposal is worth is its `chances`: for j = 1..n, the chance
that its first j tokens are all accepted, which the planner weighs against the step's cost.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shard.engine.spec.acceptance import DraftLength, MatchAcceptance
from shard.engine.spec.ngram import NgramIndex
from shard.engine.spec.prediction import PredictionAlignment
from shard.engine.spec.scout_drafts import DraftSink, usable_part
from shard.engine.spec.verify import tried_tokens
from shard.engine.types import NGRAM, PREDICTION, SCOUT, DraftOutcome, DraftSource, ScoutDraft

ReportOutcome = Callable[[DraftOutcome], None]
"""Where a proposer's scored draft tokens go (the engine's progress feed)."""


@dataclass(frozen=True)
class Proposal:
    """Draft tokens for the positions after a sequence's next token, and their worth."""

    source: DraftSource
    tokens: list[int] = field(default_factory=list)
    chances: list[float] = field(default_factory=list)
    match_length: int = 0
    """The match behind an n-gram or prediction draft."""
    scout_id: str | None = None


NO_PROPOSAL = Proposal(NGRAM)


class DraftedSequence(Protocol):
    """What a proposer sees of a sequence."""

    @property
    def key(self) -> str: ...

    @property
    def tokens(self) -> list[int]:
        """The prompt and every token sampled so far, the next (undecoded) one included."""
        ...

    @property
    def alignment(self) -> PredictionAlignment | None:
        """Where the output stands in the client's predicted output (Predicted Outputs),
        kept up to date with every sampled token; None without a prediction."""
        ...


class Proposer(Protocol):
    source: DraftSource

    def propose(self, sequence: DraftedSequence, k: int) -> Proposal:
        """At most k draft tokens (none is fine); k may be 0, and the call still counts."""
        ...

    def verified(
        self, sequence: DraftedSequence, proposal: Proposal, decoded: int, accepted: int
    ) -> None:
        """`decoded` tokens of the proposal were verified; the first `accepted` matched."""
        ...

    def unverified(
        self, sequence: DraftedSequence, proposal: Proposal, decided: Sequence[int]
    ) -> None:
        """The proposal was not verified (another won, or no draft was worth it); `decided`
        are the tokens the step decided at the proposal's positions, to score it for free."""
        ...

    def forget(self, key: str) -> None: ...


def shadow_score(tokens: Sequence[int], decided: Sequence[int]) -> tuple[int, int]:
    """(tried, accepted) had `tokens` been verified where `decided` came out: tokens up to
    the first that differs, within what was decided."""
    accepted = 0
    while accepted < min(len(tokens), len(decided)) and tokens[accepted] == decided[accepted]:
        accepted += 1
    return min(len(tokens), len(decided), accepted + 1), accepted


class NgramProposer:
    """Prompt lookup: copy what followed the longest earlier match of the context's end."""

    source: DraftSource = NGRAM

    def __init__(self, k_max: int, report: ReportOutcome) -> None:
        self.k_max = k_max
        self._report = report
        self._indexes: dict[str, NgramIndex] = {}
        self.acceptance = MatchAcceptance()
        """One table for every sequence: the model and the proposer are the same for all."""

    def propose(self, sequence: DraftedSequence, k: int) -> Proposal:
        index = self._indexes.setdefault(sequence.key, NgramIndex())
        index.extend(sequence.tokens[len(index.tokens) :])
        tokens, match = index.propose(min(k, self.k_max))
        return Proposal(NGRAM, tokens, self.acceptance.chances(match, len(tokens)), match)

    def verified(
        self, sequence: DraftedSequence, proposal: Proposal, decoded: int, accepted: int
    ) -> None:
        self.acceptance.record(proposal.match_length, tried_tokens(decoded, accepted), accepted)
        self._report(DraftOutcome(NGRAM, None, decoded, accepted))

    def unverified(
        self, sequence: DraftedSequence, proposal: Proposal, decided: Sequence[int]
    ) -> None:
        """Score it against what was decided, so the table learns without paying for drafts."""
        self.acceptance.record(proposal.match_length, *shadow_score(proposal.tokens, decided))

    def forget(self, key: str) -> None:
        self._indexes.pop(key, None)


class PredictionProposer:
    """Predicted Outputs: the prediction's next tokens, from where the output stands in it
    (`PredictionAlignment`), weighed like n-gram drafts by the run of tokens behind them."""

    source: DraftSource = PREDICTION

    def __init__(self, k_max: int, report: ReportOutcome) -> None:
        self.k_max = k_max
        self._report = report
        # a client's own prediction starts trusted a little more than a lookup in the context
        self.acceptance = MatchAcceptance(prior=0.97)

    def propose(self, sequence: DraftedSequence, k: int) -> Proposal:
        alignment = sequence.alignment
        if alignment is None:
            return NO_PROPOSAL
        tokens = alignment.draft(min(k, self.k_max))
        run = alignment.run
        return Proposal(PREDICTION, tokens, self.acceptance.chances(run, len(tokens)), run)

    def verified(
        self, sequence: DraftedSequence, proposal: Proposal, decoded: int, accepted: int
    ) -> None:
        self.acceptance.record(proposal.match_length, tried_tokens(decoded, accepted), accepted)
        self._report(DraftOutcome(PREDICTION, None, decoded, accepted))

    def unverified(
        self, sequence: DraftedSequence, proposal: Proposal, decided: Sequence[int]
    ) -> None:
        """Score it against what was decided, as n-gram drafts are."""
        self.acceptance.record(proposal.match_length, *shadow_score(proposal.tokens, decided))

    def forget(self, key: str) -> None:
        """Nothing is kept: the alignment belongs to the sequence."""


@dataclass
class _ScoutTrack:
    """One sequence's view of its scout: the draft being used and how much of it is scored."""

    length: DraftLength
    draft: ScoutDraft | None = None
    scored: int = 0
    timely: int = 0
    """How many of the draft's tokens were still ahead of the sequence when a step was
    planned: only those can earn credit."""


def _extends(later: ScoutDraft, earlier: ScoutDraft) -> bool:
    """A streamed draft: the same scout and start, the earlier tokens and more."""
    size = len(earlier.tokens)
    return (
        later.scout_id == earlier.scout_id
        and later.start == earlier.start
        and later.tokens[:size] == earlier.tokens
    )


class ScoutProposer:
    """The latest draft a scout posted for the sequence, from where the sequence now is.

    A scout whose recent acceptance is under the floor offers nothing, but its drafts are
    still scored against what the oracle decided, so it can earn drafts back. Only tokens
    that were still ahead of the sequence when a step was planned are reported as timely
    (and so credited): verified ones, and ones the planner chose not to verify that the
    oracle then decided the same way. A draft that arrives after the oracle decided its
    tokens can copy them from anywhere, such as the client's own stream, so its tokens are
    reported as late: they can count against a scout, never for it (docs/architecture.md,
    "Scouts").
    """

    source: DraftSource = SCOUT

    def __init__(
        self,
        sink: DraftSink,
        k_max: int,
        min_acceptance: float,
        n_vocab: int,
        report: ReportOutcome,
    ) -> None:
        self.sink = sink
        self.k_max = k_max
        self.min_acceptance = min_acceptance
        self.n_vocab = n_vocab
        self._report = report
        self._tracks: dict[str, _ScoutTrack] = {}

    def propose(self, sequence: DraftedSequence, k: int) -> Proposal:
        track = self._tracks.get(sequence.key)
        if track is None:
            track = self._tracks[sequence.key] = _ScoutTrack(
                DraftLength(self.k_max, self.min_acceptance)
            )
        tokens = self._open_tokens(track, sequence)
        k = min(track.length.next_k(), k)
        if not tokens or k <= 0 or track.draft is None:
            return NO_PROPOSAL
        tokens = tokens[:k]
        rate = track.length.rate
        chances = [rate**j for j in range(1, len(tokens) + 1)]
        return Proposal(SCOUT, tokens, chances, scout_id=track.draft.scout_id)

    def _open_tokens(self, track: _ScoutTrack, sequence: DraftedSequence) -> list[int]:
        """The latest draft's still-open tokens; newly decided ones are scored (the previous
        draft's too, before a newer one replaces it)."""
        draft = self.sink.latest(sequence.key)
        if draft is None:
            return []
        if draft is not track.draft:
            if track.draft is not None and _extends(draft, track.draft):
                track.draft = draft  # streamed further: what was scored and timely stays
            else:
                if track.draft is not None:
                    self._score(track, sequence.tokens)
                track.draft, track.scored, track.timely = draft, 0, 0
        rest, decided, _ = self._score(track, sequence.tokens)
        valid = 0
        while valid < len(rest) and 0 <= rest[valid] < self.n_vocab:
            valid += 1
        track.timely = max(track.timely, decided + valid)  # ahead now, as a step is planned
        return rest[:valid]

    def _score(self, track: _ScoutTrack, history: list[int]) -> tuple[list[int], int, int]:
        """Score the draft's tokens decided since last time: timely ones (ahead when a step
        was planned) and late ones are reported apart."""
        assert track.draft is not None
        rest, decided, matched = usable_part(history, track.draft)
        if decided > track.scored:
            tried = decided - track.scored
            accepted = max(0, matched - track.scored)
            track.length.record(tried, accepted)
            on_time = max(0, min(decided, track.timely) - track.scored)
            on_time_accepted = max(0, min(matched, track.timely) - track.scored)
            scout_id = track.draft.scout_id
            if on_time:
                self._report(DraftOutcome(SCOUT, scout_id, on_time, on_time_accepted))
            if tried > on_time:
                late = tried - on_time, accepted - on_time_accepted
                self._report(DraftOutcome(SCOUT, scout_id, *late, timely=False))
            track.scored = decided
        return rest, decided, matched

    def verified(
        self, sequence: DraftedSequence, proposal: Proposal, decoded: int, accepted: int
    ) -> None:
        track = self._tracks[sequence.key]
        tried = tried_tokens(decoded, accepted)
        track.scored += tried
        track.length.record(tried, accepted)
        self._report(DraftOutcome(SCOUT, proposal.scout_id, decoded, accepted))

    def unverified(
        self, sequence: DraftedSequence, proposal: Proposal, decided: Sequence[int]
    ) -> None:
        """Nothing to do: the draft is scored once the oracle has decided its positions."""

    def forget(self, key: str) -> None:
        self._tracks.pop(key, None)
        self.sink.discard(key)
