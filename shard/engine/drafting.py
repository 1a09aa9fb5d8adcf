"""Draft tokens for speculative decoding: where they come from and how many to verify.

Drafts are point masses (DESIGN.md invariant 2): the engine only asks whether draft token i
equals the token the target picks at position i, so a draft can cost time but never change
output. Two sources: the local n-gram (prompt lookup) proposer, and scouts, whose drafts
arrive from the asyncio side through `ScoutDrafts`.
"""

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

NGRAM = "ngram"
SCOUT = "scout"


class NgramIndex:
    """Prompt lookup: the latest earlier place where the context's last n tokens occurred.

    An index of every n-gram (min_n..max_n tokens) to where its continuation starts, kept up
    to date as tokens are appended, so a proposal costs a few dict lookups.
    """

    def __init__(self, min_n: int = 2, max_n: int = 4) -> None:
        self.min_n = min_n
        self.max_n = max_n
        self.tokens: list[int] = []
        self._continuations: dict[tuple[int, ...], int] = {}

    def extend(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            end = len(self.tokens)
            # the n-grams that end just before this token now have a continuation: it
            for n in range(self.min_n, self.max_n + 1):
                if end >= n:
                    self._continuations[tuple(self.tokens[end - n : end])] = end
            self.tokens.append(token)

    def propose(self, k: int) -> list[int]:
        """Up to k tokens that followed the longest earlier match of the current suffix."""
        if k <= 0:
            return []
        tokens = self.tokens
        for n in range(self.max_n, self.min_n - 1, -1):
            if len(tokens) < n:
                continue
            start = self._continuations.get(tuple(tokens[-n:]))
            if start is not None:
                return tokens[start : start + k]
        return []


class DraftLength:
    """How many draft tokens of one source a sequence should verify next.

    Verification costs time per token, so a source whose drafts are mostly rejected gets
    k = 0; its guesses are still scored for free ("shadow" checks) so it can earn drafts back.
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
