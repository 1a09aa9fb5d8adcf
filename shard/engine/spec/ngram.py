"""Prompt lookup: drafts copied from earlier in the sequence's own context."""

from collections.abc import Sequence
from typing import NamedTuple


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
