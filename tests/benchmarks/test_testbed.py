"""The swarm model and the testbed's summary, on literal costs and runs."""

import pytest

from benchmarks.deployment import deployment_markdown, predictions
from benchmarks.oracle_metrics import DraftCounts
from benchmarks.swarm_model import SwarmCase, alone, simulate
from benchmarks.testbed import (
    Costs,
    FairTestbedOutcome,
    FairTestbedRun,
    summarize_testbed,
    target_lines,
    verification_bound,
)


def step_s(sequences: int, rows: int) -> float:
    """A made-up oracle: 50 ms a step, plus 5 ms per extra row of each sequence."""
    return 0.050 + 0.005 * (sequences * rows - 1)


def case(**overrides: object) -> SwarmCase:
    fields: dict[str, object] = {
        "sequences": 1,
        "step_s": step_s,
        "scout_tok_s": 100.0,
        "draft_delay_s": 0.0,
        "news_delay_s": 0.0,
        "acceptance": 0.9,
    }
    fields.update(overrides)
    return SwarmCase(**fields)  # type: ignore[arg-type]


def test_without_a_scout_the_model_is_the_oracle_alone() -> None:
    for sequences, padded in ((1, False), (1, True), (4, False)):
        solo = case(sequences=sequences, scout=False, padded=padded)
        assert simulate(solo, 300) == pytest.approx(alone(step_s, sequences, padded), rel=0.01)


def test_a_perfect_and_instant_scout_reaches_the_verification_bound() -> None:
    perfect = case(scout_tok_s=1e6, acceptance=1.0, k=8, ahead=32)
    assert simulate(perfect, 3000) == pytest.approx(9 / step_s(1, 9), rel=0.02)


def test_a_scout_slower_than_the_oracle_still_helps_and_latency_costs() -> None:
    solo = alone(step_s, 1, False)
    near = simulate(case(scout_tok_s=40.0, acceptance=0.95))
    far = simulate(case(scout_tok_s=40.0, acceptance=0.95, draft_delay_s=0.08, news_delay_s=0.08))
    assert solo < far < near
    assert near < 40.0 + solo  # no faster than the scout drafts plus the oracle's own tokens


def test_a_scout_that_is_always_wrong_gains_nothing() -> None:
    wrong = simulate(case(acceptance=0.0, padded=True))
    assert wrong == pytest.approx(alone(step_s, 1, True), rel=0.01)


COSTS = Costs(
    step_s={(s, r): step_s(s, r) for s in (1, 4) for r in (1, 2, 3, 4, 5, 6, 8, 12, 17)},
    padded=False,
    scout_tok_s=60.0,
)


def run(
    latency: int | None, tok_s: float, texts: tuple[str, ...], accepted: float
) -> FairTestbedRun:
    drafts = (
        DraftCounts({"scout": 100.0}, {"scout": accepted}) if latency is not None else DraftCounts()
    )
    return FairTestbedRun(latency, 1, "greedy", int(tok_s * 10), 10.0, texts, drafts)


def test_the_summary_compares_with_the_oracle_alone_and_the_model() -> None:
    outcome = FairTestbedOutcome(
        costs=COSTS,
        runs=[run(None, 20.0, ("a",), 0), run(0, 41.0, ("a",), 90), run(20, 36.0, ("b",), 90)],
    )
    rows = summarize_testbed(outcome)
    assert [(r.latency_ms, round(r.speedup, 2), r.identical) for r in rows] == [
        (0, 2.05, True),
        (20, 1.8, False),
    ]
    first = rows[0]
    assert first.acceptance == pytest.approx(0.9)
    assert first.ceiling_tok_s == pytest.approx(min(54.0, verification_bound(COSTS, 1, 0.9)))
    assert first.predicted_tok_s is not None and first.predicted_tok_s > 20.0
    targets = "\n".join(target_lines(rows))
    assert "different (target at least 1.8x, identical): **not met**" in targets


def test_the_deployment_prediction_states_its_inputs_and_needs_a_fast_drafter() -> None:
    rows = predictions()
    assert {row.sequences for row in rows} == {1, 8}
    slow = [row for row in rows if row.scout_tok_s < row.alone_tok_s / row.sequences]
    assert slow and all(row.speedup == pytest.approx(1.0, abs=0.02) for row in slow)
    text = "\n".join(deployment_markdown())
    assert "TQ2_0" in text and "3.35 TB/s" in text and "(not measured)" in text
