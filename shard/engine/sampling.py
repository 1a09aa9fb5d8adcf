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
_NUCLEUS_SHORTLIST = 4096


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


def target_distribution(processed: Logits, params: SamplingParams) -> npt.NDArray[np.float64]:
    """p_i: softmax at the temperature, cut to the top_p nucleus and renormalised."""
    scaled = processed.astype(np.float64) / params.temperature
    scaled -= scaled.max()
    probs = np.exp(scaled)
    probs /= probs.sum()
    if params.top_p < 1.0:
        probs = _nucleus(probs, params.top_p)
    return probs


def _nucleus(probs: npt.NDArray[np.float64], top_p: float) -> npt.NDArray[np.float64]:
    """Zero all but the smallest most-likely set whose mass reaches top_p.

    Sorting 262k entries per token is slow, so the likeliest few thousand are sorted first;
    the full sort runs only when they do not reach top_p.
    """
    candidates = np.arange(len(probs))
    if len(probs) > _NUCLEUS_SHORTLIST:
        shortlist = np.argpartition(-probs, _NUCLEUS_SHORTLIST)[:_NUCLEUS_SHORTLIST]
        if probs[shortlist].sum() >= top_p:
            candidates = shortlist
    order = candidates[np.lexsort((candidates, -probs[candidates]))]
    cumulative = np.cumsum(probs[order])
    keep = min(int(np.searchsorted(cumulative, top_p, side="left")) + 1, len(order))
    nucleus = np.zeros_like(probs)
    nucleus[order[:keep]] = probs[order[:keep]]
    normalised: npt.NDArray[np.float64] = nucleus / nucleus.sum()
    return normalised


def pick_token(processed: Logits, params: SamplingParams, u: float) -> int:
    """The target's token for this position: argmax when greedy, else inverse CDF at u."""
    if params.greedy:
        return int(np.argmax(processed))
    cdf = np.cumsum(target_distribution(processed, params))
    index = int(np.searchsorted(cdf, u * cdf[-1], side="right"))
    return min(index, len(cdf) - 1)


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
