"""The decode cost table and the choice of draft length, on literal numbers."""

import pytest

from shard.engine.spec.step_cost import DraftGate, StepCost, best_draft_length


def cpu_like() -> StepCost:
    """Shaped like 2 CPU cores: 1 token cheap, 2..7 slow, 8 and up about linear."""
    cost = StepCost()
    for tokens, ms in [(1, 10), (2, 23), (4, 34), (6, 54), (8, 44), (16, 61), (32, 114)]:
        cost.observe(tokens, ms / 1000)
    return cost


def test_estimates_interpolate_and_learn() -> None:
    cost = cpu_like()
    assert cost.estimate(8) == pytest.approx(0.044)
    assert cost.estimate(12) == pytest.approx((0.044 + 0.061) / 2)
    assert cost.estimate(64) == pytest.approx(0.114 + (0.114 - 0.061) / 16 * 32)
    cost.observe(8, 0.064)
    assert cost.estimate(8) == pytest.approx(0.048)  # smoothed towards the new figure
    assert StepCost().estimate(4) is None


def test_no_drafts_without_costs_or_candidates() -> None:
    assert best_draft_length([[0.9, 0.8]], StepCost()) == 0
    assert best_draft_length([[], []], cpu_like()) == 0


def test_one_sequence_drafts_only_likely_long_runs() -> None:
    cost = cpu_like()
    sure = [[0.95**j for j in range(1, 17)]]
    assert best_draft_length(sure, cost) >= 7
    unsure = [[0.5**j for j in range(1, 17)]]
    assert best_draft_length(unsure, cost) == 0


def test_many_sequences_draft_less() -> None:
    cost = cpu_like()
    eight = [[0.7**j for j in range(1, 9)] for _ in range(8)]
    assert best_draft_length(eight, cost) <= 1
    one = [[0.7**j for j in range(1, 9)]]
    assert best_draft_length(one, cost) == 0  # 1 token costs 10 ms, 2 cost 23


def test_gate_stops_drafts_that_lose_and_checks_again() -> None:
    gate = DraftGate(explore_every=4)
    gate.observe(8, True, 100, 1.0)
    gate.observe(8, False, 180, 1.0)
    decisions = [gate.allows(8) for _ in range(8)]
    assert decisions.count(True) == 2  # only the periodic re-checks
    gate.observe(8, True, 400, 0.5)
    gate.observe(8, True, 400, 0.5)
    gate.observe(8, True, 400, 0.5)
    assert [gate.allows(8) for _ in range(3)] == [True, True, True]


def test_no_drafts_that_would_slow_a_sequence_down() -> None:
    cost = cpu_like()
    sure = [0.99**j for j in range(1, 9)]
    assert best_draft_length([sure] * 8, cost) >= 1  # every sequence gains
    # one sequence has nothing to draft: the longer step would only slow its stream
    assert best_draft_length([sure] * 7 + [[]], cost) == 0
