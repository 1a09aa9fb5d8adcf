"""What a decode step costs for a given number of tokens, learned on this machine.

Whether a draft token is worth verifying depends on the hardware: on a GPU that is idle
between weight loads, a few more tokens in a step are almost free; on 2 CPU cores that are
already busy with eight sequences, each costs most of what a real token costs, and drafts
must be accepted almost always to pay. The engine times a few decode sizes at start, keeps
timing its steps, and asks this table before adding draft tokens.
"""

import bisect

CALIBRATION_SIZES = (*range(1, 17), 20, 24, 32, 48, 64)


class StepCost:
    """Seconds per decode by batch size: measured points, linear in between."""

    def __init__(self, smoothing: float = 0.2) -> None:
        self.smoothing = smoothing
        self._sizes: list[int] = []
        self._seconds: dict[int, float] = {}

    def observe(self, tokens: int, seconds: float) -> None:
        if tokens <= 0 or seconds <= 0:
            return
        known = self._seconds.get(tokens)
        if known is None:
            bisect.insort(self._sizes, tokens)
            self._seconds[tokens] = seconds
        else:
            self._seconds[tokens] = known + self.smoothing * (seconds - known)

    def measured(self) -> dict[int, float]:
        return dict(self._seconds)

    def estimate(self, tokens: int) -> float | None:
        """As measured, or interpolated between the nearest measured sizes (kernels switch
        at some sizes, so a decode of 6 tokens can cost more than one of 8)."""
        sizes = self._sizes
        if not sizes:
            return None
        if tokens in self._seconds:
            return self._seconds[tokens]
        at = bisect.bisect_left(sizes, tokens)
        if at == 0 or len(sizes) == 1:
            return self._seconds[sizes[0]] * tokens / sizes[0]
        if at == len(sizes):
            low, high = sizes[-2], sizes[-1]
        else:
            low, high = sizes[at - 1], sizes[at]
        slope = (self._seconds[high] - self._seconds[low]) / (high - low)
        return self._seconds[low] + slope * (tokens - low)


def best_draft_length(gains: list[list[float]], cost: StepCost, margin: float = 0.1) -> int:
    """One draft length k for all of this step's sequences, or 0 for no drafts.

    `gains[s][j]` is the chance that sequence s's draft tokens 0..j are all accepted. With
    one KV stream per sequence, llama.cpp splits a batch into sub-batches that take the same
    number of tokens from every sequence, so every sequence gets k tokens (drafts shorter
    than k are padded with guesses that gain nothing) and the step is one decode of
    N * (1 + k).

    Every sequence pays for the step, so a k is only considered if no sequence expects to
    be slowed by it: drafting for some must not stretch the others' streams (and a closed
    set of clients waits on its slowest one). Of those, the k that maximises expected tokens
    per second wins if it beats no drafts by `margin` (the costs are estimates); 0 when
    costs are unknown.
    """
    n = len(gains)
    plain = cost.estimate(n)
    if plain is None or n == 0:
        return 0
    best_k, best_rate = 0, n / plain * (1 + margin)
    for k in range(1, max((len(g) for g in gains), default=0) + 1):
        seconds = cost.estimate(n * (1 + k))
        if seconds is None or seconds <= 0:  # extrapolated from noisy timings
            continue
        expected = [1 + sum(g[:k]) for g in gains]
        if min(expected) / seconds < 1 / plain:
            continue  # some sequence would make fewer tokens per second than without drafts
        if sum(expected) / seconds > best_rate:
            best_k, best_rate = k, sum(expected) / seconds
    return best_k


class DraftGate:
    """Keeps drafting honest where the cost estimates are wrong.

    For each number of decoding sequences it tracks the tokens per second that steps with
    drafts really made against steps without. A step without drafts makes one token per
    sequence whatever the text, so the comparison is fair. Where drafting loses, it stops,
    except for an occasional step that checks again; every so often a step goes without
    drafts to keep the plain figure fresh.
    """

    def __init__(self, explore_every: int = 16, smoothing: float = 0.1) -> None:
        self.explore_every = explore_every
        self.smoothing = smoothing
        self._rates: dict[tuple[int, bool], float] = {}
        self._steps: dict[int, int] = {}

    def allows(self, sequences: int) -> bool:
        step = self._steps[sequences] = self._steps.get(sequences, 0) + 1
        if step % self.explore_every == 0:
            return False
        drafted = self._rates.get((sequences, True))
        plain = self._rates.get((sequences, False))
        if drafted is None or plain is None or drafted >= plain:
            return True
        return step % self.explore_every == self.explore_every // 2

    def observe(self, sequences: int, drafted: bool, tokens: int, seconds: float) -> None:
        if seconds <= 0:
            return
        rate = tokens / seconds
        known = self._rates.get((sequences, drafted))
        updated = rate if known is None else known + self.smoothing * (rate - known)
        self._rates[(sequences, drafted)] = updated
