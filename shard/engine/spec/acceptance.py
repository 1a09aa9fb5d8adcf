"""How likely a draft token is to be accepted: per match length for n-gram drafts, a recent
rate for each scout. What the planner weighs draft tokens by."""

import bisect
import math


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
