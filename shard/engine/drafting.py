"""Draft tokens for speculative decoding: where they come from and how many to verify.

Drafts are point masses (DESIGN.md invariant 2): the engine only asks whether draft token i
equals the token the target picks at position i, so a draft can cost time but never change
output. Two sources: the local n-gram (prompt lookup) proposer, and scouts, whose drafts
arrive from the asyncio side through `ScoutDrafts`.
"""

import bisect
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

NGRAM = "ngram"
SCOUT = "scout"


class NgramProposal(NamedTuple):
    """Tokens that followed an earlier match of the context's suffix, and how long that match
    is (the n-gram that found it, extended back as far as the two places agree)."""

    tokens: list[int]
    match_length: int


class NgramIndex:
    """Prompt lookup: where the context's last n tokens occurred before, and what followed.

    An index of every n-gram (min_n..max_n tokens) to the places its continuations start
    (the latest `keep`), kept up to date as tokens are appended. Of those places, a proposal
    copies from the one whose match reaches furthest back: in text that repeats phrases,
    the latest occurrence of a 4-gram is often not the passage being copied.
    """

    def __init__(
        self, min_n: int = 2, max_n: int = 4, keep: int = 8, longest_match: int = 32
    ) -> None:
        self.min_n = min_n
        self.max_n = max_n
        self.keep = keep
        self.longest_match = longest_match
        self.tokens: list[int] = []
        self._continuations: dict[tuple[int, ...], list[int]] = {}

    def extend(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            end = len(self.tokens)
            # the n-grams that end just before this token now have a continuation: it
            for n in range(self.min_n, self.max_n + 1):
                if end >= n:
                    starts = self._continuations.setdefault(tuple(self.tokens[end - n : end]), [])
                    starts.append(end)
                    if len(starts) > self.keep:
                        del starts[0]
            self.tokens.append(token)

    def propose(self, k: int) -> NgramProposal:
        """Up to k tokens that followed the longest earlier match of the current suffix."""
        tokens = self.tokens
        if k <= 0:
            return NgramProposal([], 0)
        for n in range(self.max_n, self.min_n - 1, -1):
            if len(tokens) < n:
                continue
            starts = self._continuations.get(tuple(tokens[-n:]))
            if starts:
                # the latest wins ties
                lengths = [(self._match_length(start, n), start) for start in reversed(starts)]
                length, start = max(lengths, key=lambda pair: pair[0])
                return NgramProposal(tokens[start : start + k], length)
        return NgramProposal([], 0)

    def _match_length(self, start: int, n: int) -> int:
        """How far back the tokens before `start` agree with the context's end (n at least)."""
        tokens, length = self.tokens, n
        while (
            length < self.longest_match
            and start - length > 0
            and tokens[start - length - 1] == tokens[-length - 1]
        ):
            length += 1
        return length


class MatchAcceptance:
    """How often an n-gram draft token is accepted, by the length of the match behind it.

    A draft copied from a place whose last 30 tokens equal ours is almost always right; one
    found by a 2-token match often is not. Each accepted token makes the match one longer,
    so token j of a draft found with match length L is judged at L + j. Counts are shared by
    every sequence (the model and the proposer are the same for all, though sampled requests
    miss more than greedy ones and pull the figures down for both) and halved when they grow
    past `memory`, so the table follows the current traffic.
    """

    BUCKETS = (2, 3, 4, 5, 6, 7, 8, 12, 16, 24)
    """Lower bounds of the match lengths counted together."""

    def __init__(self, prior: float = 0.9, prior_weight: float = 10.0, memory: float = 200.0):
        self.memory = memory
        self._accepted = [prior * prior_weight] * len(self.BUCKETS)
        self._tried = [prior_weight] * len(self.BUCKETS)

    def _bucket(self, match_length: int) -> int:
        return max(0, bisect.bisect_right(self.BUCKETS, match_length) - 1)

    def rate(self, match_length: int) -> float:
        """The chance that a draft token after a match this long is accepted."""
        bucket = self._bucket(match_length)
        return self._accepted[bucket] / self._tried[bucket]

    def chances(self, match_length: int, n: int) -> list[float]:
        """For j = 1..n, the chance that the draft's first j tokens are all accepted."""
        chances, chance = [], 1.0
        for place in range(n):
            chance *= self.rate(match_length + place)
            chances.append(chance)
        return chances

    def record(self, match_length: int, tried: int, accepted: int) -> None:
        """`tried` draft tokens were checked and the first `accepted` of them matched."""
        for place in range(tried):
            bucket = self._bucket(match_length + place)
            self._accepted[bucket] += place < accepted
            self._tried[bucket] += 1
            if self._tried[bucket] > self.memory:
                self._accepted[bucket] /= 2
                self._tried[bucket] /= 2


class DraftLength:
    """How many of a scout's draft tokens a sequence should verify next.

    Verification costs time per token, so a scout whose drafts are mostly rejected gets
    k = 0; its drafts are still scored for free ("shadow" checks) so it can earn drafts back.
    The rate is an exponential average of the share of draft tokens accepted.
    """

    def __init__(self, k_max: int, min_acceptance: float, decay: float = 0.7) -> None:
        self.k_max = k_max
        self.min_acceptance = min_acceptance
        self.decay = decay
        self.rate = 0.0

    def record(self, proposed: int, accepted: int) -> None:
        if proposed > 0:
            self.rate = self.decay * self.rate + (1 - self.decay) * accepted / proposed

    def next_k(self) -> int:
        if self.k_max <= 0 or self.rate < self.min_acceptance:
            return 0
        if self.rate >= 1.0:
            return self.k_max
        # about twice the expected accepted run, 2 at least
        return max(2, min(self.k_max, math.ceil(2 * self.rate / (1 - self.rate))))


@dataclass(frozen=True)
class ScoutDraft:
    """Draft tokens a scout proposed for positions start, start + 1, ... of a sequence."""

    scout_id: str
    start: int
    tokens: tuple[int, ...]


class ScoutDrafts:
    """The latest scout draft for each sequence, posted by the hub and read by the engine.

    The engine never waits here (invariant 4): a draft that has not arrived by the time a
    step is planned is simply not used.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, ScoutDraft] = {}

    def offer(self, sequence_key: str, draft: ScoutDraft) -> None:
        with self._lock:
            self._latest[sequence_key] = draft

    def latest(self, sequence_key: str) -> ScoutDraft | None:
        with self._lock:
            return self._latest.get(sequence_key)

    def discard(self, sequence_key: str) -> None:
        with self._lock:
            self._latest.pop(sequence_key, None)


def usable_part(history: Sequence[int], draft: ScoutDraft) -> tuple[list[int], int, int]:
    """Align a draft with what the sequence has decided since it was made.

    Returns (the draft's tokens past `history`, tokens of it already decided, how many of
    those matched). A draft that disagrees with a decided token is of no further use.
    """
    known = len(history)
    if draft.start > known or draft.start < 0:
        return [], 0, 0
    decided = min(known - draft.start, len(draft.tokens))
    matched = 0
    while matched < decided and draft.tokens[matched] == history[draft.start + matched]:
        matched += 1
    if matched < decided:
        return [], min(matched + 1, decided), matched
    return list(draft.tokens[decided:]), decided, matched


@dataclass(frozen=True)
class SequenceUpdate:
    """Engine to swarm: a sequence's new tokens (from `start`), or its end."""

    sequence_key: str
    owner: str | None
    start: int
    tokens: tuple[int, ...]
    ended: bool = False


@dataclass(frozen=True)
class DraftOutcome:
    """Engine to swarm and metrics: how many of a source's draft tokens were accepted."""

    source: str
    scout_id: str | None
    proposed: int
    accepted: int
