"""Coupled sampling (docs/architecture.md, invariant 3).

The token at position i is a deterministic function of the processed distribution p_i and a
uniform u_i drawn from (seed, choice, i) by a counter-based generator: the inverse CDF over
token ids in id order. Verifying a draft is then an equality check, and a seed reproduces
the output whatever drafts were offered.
"""

import hashlib
import struct
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from shard.engine.types import SamplingParams, TokenLogprob

Logits = npt.NDArray[np.float32]

PieceLookup = Callable[[int], bytes]
"""Token id to the bytes it renders as."""

_SEED_MASK = (1 << 64) - 1
_NUCLEUS_SHORTLIST = 1024


def coupled_uniform(seed: int, choice: int, position: int) -> float:
    """u in [0, 1) from a keyed hash of the counter: same inputs, same u, on any machine."""
    key = struct.pack("<QQQ", seed & _SEED_MASK, choice, position)
    word = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
    return (word >> 11) * 2.0**-53


def process_logits(
    logits: Logits, params: SamplingParams, generated_counts: Mapping[int, int]
) -> Logits:
    """Apply logit_bias and OpenAI's presence/frequency penalties; returns a new array."""
    processed = np.array(logits, dtype=np.float32, copy=True)
    if params.logit_bias:
        ids = np.fromiter(params.logit_bias.keys(), dtype=np.int64)
        processed[ids] += np.fromiter(params.logit_bias.values(), dtype=np.float32)
    if generated_counts and (params.presence_penalty or params.frequency_penalty):
        ids = np.fromiter(generated_counts.keys(), dtype=np.int64)
        counts = np.fromiter(generated_counts.values(), dtype=np.float32)
        processed[ids] -= counts * params.frequency_penalty + params.presence_penalty
    return processed


def needs_processing(params: SamplingParams, generated_counts: Mapping[int, int]) -> bool:
    """Whether logits differ from the model's raw ones (lets greedy skip a 1 MB copy)."""
    penalised = bool(generated_counts) and bool(params.presence_penalty or params.frequency_penalty)
    return bool(params.logit_bias) or penalised


_BLOCK = 512
"""Ids per block of the two-level inverse CDF: block sums find the block, one short cumulative
sum inside it finds the token (262,144 ids are 512 blocks of 512)."""


def weights(processed: Logits, params: SamplingParams) -> npt.NDArray[np.float32]:
    """exp((logit - best) / temperature) for every id, in float32, zero-padded to whole
    blocks: the unnormalised distribution, in a few vectorised passes over the vocabulary."""
    size = len(processed)
    padded = np.zeros(-(-size // _BLOCK) * _BLOCK, dtype=np.float32)
    scaled = padded[:size]
    np.subtract(processed, processed.max(), out=scaled)
    scaled *= np.float32(1.0 / params.temperature)
    np.exp(scaled, out=scaled)
    return padded


def nucleus(
    weight: npt.NDArray[np.float32], top_p: float, size: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """The top_p nucleus in ascending id and its renormalised probabilities: the smallest
    most-likely set whose mass reaches top_p (ties by lower id).

    Only tokens with at least (1 - top_p) / size of the mass can be in it (the lighter ones
    are outweighed by the rest), so the sort runs over those alone, and exactly."""
    total = float(weight.sum(dtype=np.float64))
    ids = np.flatnonzero(weight[:size] >= (1.0 - top_p) * total / size)
    probs = weight[ids].astype(np.float64) / total
    pool = np.arange(len(ids))
    if len(ids) > _NUCLEUS_SHORTLIST:
        shortlist = np.argpartition(-probs, _NUCLEUS_SHORTLIST)[:_NUCLEUS_SHORTLIST]
        if probs[shortlist].sum() >= top_p:
            pool = shortlist
    order = pool[np.lexsort((ids[pool], -probs[pool]))]
    cumulative = np.cumsum(probs[order])
    keep = min(int(np.searchsorted(cumulative, top_p, side="left")) + 1, len(order))
    kept = np.sort(order[:keep])
    kept_probs = probs[kept]
    normalised: npt.NDArray[np.float64] = kept_probs / kept_probs.sum()
    return ids[kept], normalised


def target_distribution(processed: Logits, params: SamplingParams) -> npt.NDArray[np.float64]:
    """p_i over the whole vocabulary: for tests and reports."""
    size = len(processed)
    weight = weights(processed, params)
    full = np.zeros(size, dtype=np.float64)
    if params.top_p < 1.0:
        ids, probs = nucleus(weight, params.top_p, size)
        full[ids] = probs
    else:
        full[:] = weight[:size] / weight.sum(dtype=np.float64)
    return full


def _inverse_cdf(weight: npt.NDArray[np.float32], u: float) -> int:
    """The first id whose cumulative weight, in id order, passes u of the total."""
    blocks = np.cumsum(weight.reshape(-1, _BLOCK).sum(axis=1), dtype=np.float64)
    target = u * float(blocks[-1])
    last = int(np.searchsorted(blocks, blocks[-1], side="left"))  # the last with any weight
    block = min(int(np.searchsorted(blocks, target, side="right")), last)
    rest = target - (float(blocks[block - 1]) if block else 0.0)
    inside = weight[block * _BLOCK : (block + 1) * _BLOCK]
    index = int(np.searchsorted(np.cumsum(inside, dtype=np.float64), rest, side="right"))
    if index >= _BLOCK:  # the block's float32 sum and its float64 running sum differ a hair
        index = int(np.flatnonzero(inside)[-1])
    return block * _BLOCK + index


def pick_token(processed: Logits, params: SamplingParams, u: float) -> int:
    """The target's token for this position: argmax when greedy, else the inverse CDF at u
    over the (nucleus of the) distribution in token id order."""
    if params.greedy:
        return int(np.argmax(processed))
    weight = weights(processed, params)
    if params.top_p >= 1.0:
        return _inverse_cdf(weight, u)
    ids, probs = nucleus(weight, params.top_p, len(processed))
    cdf = np.cumsum(probs)
    index = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
    return int(ids[min(index, len(ids) - 1)])


def token_logprob(
    raw_logits: Logits, token: int, top_n: int, piece_of: PieceLookup
) -> TokenLogprob:
    """The model's log-probability of `token` (before sampling settings) and its top rivals."""
    shifted = raw_logits.astype(np.float64) - float(raw_logits.max())
    log_z = float(np.log(np.exp(shifted).sum()))
    logprob = float(shifted[token]) - log_z
    top = tuple((piece_of(t), float(shifted[t]) - log_z) for t in _strongest(shifted, top_n))
    return TokenLogprob(token=piece_of(token), logprob=logprob, top=top)


def _strongest(values: np.ndarray, n: int) -> list[int]:
    """The indices of the `n` largest values, largest first, the lower index first among
    equals. Repeated argmax: over a vocabulary of 262k, 20 of them take a fifth of the time
    argpartition does, which matters when a whole prompt is scored."""
    if n <= 0:
        return []
    rest = values.copy()
    best: list[int] = []
    for _ in range(min(n, len(rest))):
        index = int(np.argmax(rest))
        if rest[index] == -np.inf:
            break  # fewer than n are finite: never for raw logits, but no index twice
        best.append(index)
        rest[index] = -np.inf
    return best
