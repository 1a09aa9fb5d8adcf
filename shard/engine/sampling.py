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


TAIL_GAP = 30.0
"""Tokens whose scaled logit is more than this below the best one are never sampled: each has
under e^-30 of the likeliest token's probability, together under 3e-8 of the mass on a 262k
vocabulary. A fixed rule of the distribution alone, so sampling stays the same function of
(distribution, u); it lets the softmax and the inverse CDF run over a few candidates instead
of the whole vocabulary."""


def candidates(
    processed: Logits, params: SamplingParams
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """The tokens that can be sampled, in ascending id, and their probabilities: softmax at
    the temperature over the tokens within `TAIL_GAP`, cut to the top_p nucleus."""
    best = float(processed.max())
    ids = np.flatnonzero(processed >= best - TAIL_GAP * params.temperature)
    scaled = (processed[ids].astype(np.float64) - best) / params.temperature
    probs = np.exp(scaled)
    probs /= probs.sum()
    if params.top_p < 1.0:
        ids, probs = _nucleus(ids, probs, params.top_p)
    return ids, probs


def target_distribution(processed: Logits, params: SamplingParams) -> npt.NDArray[np.float64]:
    """p_i over the whole vocabulary (zero outside the candidates): for tests and reports."""
    ids, probs = candidates(processed, params)
    full = np.zeros(len(processed), dtype=np.float64)
    full[ids] = probs
    return full


def _nucleus(
    ids: npt.NDArray[np.intp], probs: npt.NDArray[np.float64], top_p: float
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """The smallest most-likely set whose mass reaches top_p (ties by lower id), renormalised
    and back in ascending id. Sorting many candidates is slow, so the likeliest few thousand
    are sorted first; all of them only when those do not reach top_p."""
    pool = np.arange(len(ids))
    if len(ids) > _NUCLEUS_SHORTLIST:
        shortlist = np.argpartition(-probs, _NUCLEUS_SHORTLIST)[:_NUCLEUS_SHORTLIST]
        if probs[shortlist].sum() >= top_p:
            pool = shortlist
    order = pool[np.lexsort((ids[pool], -probs[pool]))]
    cumulative = np.cumsum(probs[order])
    keep = min(int(np.searchsorted(cumulative, top_p, side="left")) + 1, len(order))
    kept = np.sort(order[:keep])
    nucleus = probs[kept]
    normalised: npt.NDArray[np.float64] = nucleus / nucleus.sum()
    return ids[kept], normalised


def pick_token(processed: Logits, params: SamplingParams, u: float) -> int:
    """The target's token for this position: argmax when greedy, else the inverse CDF at u
    over the candidates in token id order."""
    if params.greedy:
        return int(np.argmax(processed))
    ids, probs = candidates(processed, params)
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
    top: tuple[tuple[bytes, float], ...] = ()
    if top_n > 0:
        best = np.argpartition(-shifted, top_n - 1)[:top_n]
        best = best[np.argsort(-shifted[best], kind="stable")]
        top = tuple((piece_of(int(t)), float(shifted[t]) - log_z) for t in best)
    return TokenLogprob(token=piece_of(token), logprob=logprob, top=top)
