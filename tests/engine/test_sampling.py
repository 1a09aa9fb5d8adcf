"""Coupled sampling on literal arrays: determinism, exactness of the target distribution."""

import numpy as np
import pytest

from shard.engine.sampling import (
    coupled_uniform,
    needs_processing,
    pick_token,
    process_logits,
    target_distribution,
)
from shard.engine.types import SamplingParams


def logits(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def test_uniform_is_a_pure_function_of_seed_choice_position() -> None:
    assert coupled_uniform(1, 0, 5) == coupled_uniform(1, 0, 5)
    draws = {coupled_uniform(1, 0, i) for i in range(100)}
    assert len(draws) == 100
    assert coupled_uniform(1, 0, 0) != coupled_uniform(2, 0, 0)
    assert coupled_uniform(1, 0, 0) != coupled_uniform(1, 1, 0)
    assert all(0.0 <= u < 1.0 for u in draws)


def test_uniform_accepts_negative_and_huge_seeds() -> None:
    assert 0.0 <= coupled_uniform(-5, 0, 0) < 1.0
    assert 0.0 <= coupled_uniform(2**64 - 1, 3, 9) < 1.0


def test_greedy_is_argmax_with_lowest_id_on_ties() -> None:
    params = SamplingParams(seed=0, temperature=0.0)
    assert pick_token(logits(0.1, 3.0, 3.0, -1.0), params, 0.99) == 1


def test_inverse_cdf_walks_token_ids_in_order() -> None:
    params = SamplingParams(seed=0, temperature=1.0)
    values = logits(0.0, 0.0, 0.0, 0.0)  # uniform over 4 tokens
    assert [pick_token(values, params, u) for u in (0.0, 0.24, 0.26, 0.6, 0.99)] == [0, 0, 1, 2, 3]


def test_sampled_frequencies_follow_the_target_distribution() -> None:
    params = SamplingParams(seed=0, temperature=0.8)
    values = logits(1.0, 2.0, 0.5, 3.0)
    target = target_distribution(values, params)
    draws = [pick_token(values, params, coupled_uniform(42, 0, i)) for i in range(20000)]
    observed = np.bincount(draws, minlength=4) / len(draws)
    assert np.allclose(observed, target, atol=0.015)


def test_top_p_keeps_the_smallest_likeliest_set() -> None:
    params = SamplingParams(seed=0, temperature=1.0, top_p=0.7)
    probs = target_distribution(np.log(np.array([0.1, 0.5, 0.3, 0.1], dtype=np.float32)), params)
    assert probs[0] == 0 and probs[3] == 0
    assert probs[1] == pytest.approx(0.5 / 0.8) and probs[2] == pytest.approx(0.3 / 0.8)


def test_top_p_on_a_large_vocabulary_matches_a_full_sort() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=20000).astype(np.float32) * 3
    params = SamplingParams(seed=0, temperature=1.0, top_p=0.9)
    probs = target_distribution(values, params)
    full = np.exp(values - values.max())
    full /= full.sum()
    order = np.argsort(-full, kind="stable")
    keep = int(np.searchsorted(np.cumsum(full[order]), 0.9)) + 1
    assert set(np.nonzero(probs)[0]) == set(order[:keep])


def test_top_p_zero_keeps_only_the_likeliest() -> None:
    params = SamplingParams(seed=0, temperature=1.0, top_p=0.0)
    assert all(pick_token(logits(0.0, 2.0, 1.0), params, u) == 1 for u in (0.0, 0.5, 0.999))


def test_penalties_follow_openai_formula() -> None:
    params = SamplingParams(seed=0, presence_penalty=0.5, frequency_penalty=0.25)
    counts = {1: 2, 3: 1}
    assert needs_processing(params, counts)
    out = process_logits(logits(1.0, 1.0, 1.0, 1.0), params, counts)
    assert out.tolist() == [1.0, 1.0 - 0.5 - 0.5, 1.0, 1.0 - 0.25 - 0.5]


def test_logit_bias_adds_to_raw_logits_without_touching_the_input() -> None:
    params = SamplingParams(seed=0, logit_bias={0: -100.0, 2: 5.0})
    raw = logits(1.0, 1.0, 1.0)
    out = process_logits(raw, params, {})
    assert out.tolist() == [-99.0, 1.0, 6.0]
    assert raw.tolist() == [1.0, 1.0, 1.0]
    assert not needs_processing(SamplingParams(seed=0), {5: 1})


def test_the_inverse_cdf_crosses_block_boundaries_in_id_order() -> None:
    params = SamplingParams(seed=0, temperature=1.0)
    values = np.full(1500, -200.0, dtype=np.float32)  # 1500 ids: blocks of 512, the last short
    values[[3, 511, 512, 1499]] = 0.0  # four equal tokens, in three blocks
    picks = [pick_token(values, params, u) for u in (0.0, 0.26, 0.51, 0.76, 0.999)]
    assert picks == [3, 511, 512, 1499, 1499]


def test_sampling_a_large_vocabulary_matches_the_full_softmax() -> None:
    rng = np.random.default_rng(1)
    values = (rng.normal(size=50000) * 4).astype(np.float32)
    params = SamplingParams(seed=0, temperature=0.7)
    full = np.exp((values.astype(np.float64) - values.max()) / params.temperature)
    full /= full.sum()
    assert np.abs(target_distribution(values, params) - full).sum() < 1e-6  # float32 weights
    cdf = np.cumsum(full)
    for u in (0.001, 0.3, 0.5, 0.77, 0.999):
        assert pick_token(values, params, u) == int(np.searchsorted(cdf, u, side="right"))


def test_the_nucleus_shortlist_loses_nothing_on_a_flat_distribution() -> None:
    """Many tokens of near-equal weight: the nucleus needs most of them, none is cut early."""
    values = np.zeros(4000, dtype=np.float32)
    values[:10] = 1.0
    params = SamplingParams(seed=0, temperature=1.0, top_p=0.95)
    probs = target_distribution(values, params)
    full = np.exp(values.astype(np.float64))
    full /= full.sum()
    order = np.argsort(-full, kind="stable")
    keep = int(np.searchsorted(np.cumsum(full[order]), 0.95)) + 1
    assert set(np.nonzero(probs)[0]) == set(order[:keep])
