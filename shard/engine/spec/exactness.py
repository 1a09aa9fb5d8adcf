"""Whether drafts are exact for the loaded model on the running build (docs/architecture.md,
invariant 1).

Verifying a draft decodes several tokens of a sequence in one batch; the output is lossless
only if their logits equal those of decoding them one at a time, bit for bit. Some weight
types on some builds take one kernel for one row and another for many, which accumulate in
different orders (F16, BF16 and F32 through llamafile's sgemm on CPUs), so this is measured
at start rather than assumed.

With `pad_single_rows`, every one-at-a-time decode carries a second row with logits (a filler
token after it, dropped again), as the engine does on builds where only one row takes the
other kernel: then no decode has a single row, and every one takes the kernel for many.
"""

import numpy as np

from shard.engine.model import Model, TokenBatch

PROBE_TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away."
_PREFIX = 4
_DRAFT = 10
"""Enough rows for every sgemm: x86 takes 2+ rows, but ARM takes 4+ (F32) or 8+ (F16)."""


def drafts_are_exact(model: Model, batch: TokenBatch, pad_single_rows: bool = False) -> bool:
    """Decode a few tokens after a cached prefix one at a time, then all in one batch, in
    sequence 0, and compare every position's logits bit for bit."""
    tokens = model.tokenize(PROBE_TEXT)[: _PREFIX + _DRAFT]
    if len(tokens) < _PREFIX + 2:
        return True  # nothing to compare against: a model this small drafts nothing useful
    one_at_a_time = []
    _decode(model, batch, tokens[:_PREFIX], 0, last_only=True)
    for position in range(_PREFIX, len(tokens)):
        filler = [tokens[position]] if pad_single_rows else []
        _decode(model, batch, [tokens[position], *filler], position, last_only=False)
        one_at_a_time.append(np.array(model.logits(0)))
        model.forget(0, position + 1)
    model.forget(0, _PREFIX)
    _decode(model, batch, tokens[_PREFIX:], _PREFIX, last_only=False)
    together = [np.array(model.logits(index)) for index in range(len(tokens) - _PREFIX)]
    model.forget(0)
    batch.clear()
    return all(np.array_equal(a, b) for a, b in zip(one_at_a_time, together, strict=True))


def _decode(
    model: Model, batch: TokenBatch, tokens: list[int], start: int, last_only: bool
) -> None:
    batch.clear()
    for offset, token in enumerate(tokens):
        want = not last_only or offset == len(tokens) - 1
        batch.add(token, start + offset, 0, want)
    model.decode(batch)
