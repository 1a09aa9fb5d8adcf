"""The structured-output section's arithmetic on literal samples: the schema check and the
cost of a constrained token."""

import json

from benchmarks.structured import (
    StructuredOutcome,
    StructuredSample,
    matches_schema,
    summarize_structured,
)

GOOD = {"title": "Sea", "summary": "Salty.", "tags": ["water"], "rating": 7}


def test_an_answer_parses_only_with_the_schemas_fields_types_and_bounds() -> None:
    assert matches_schema(json.dumps(GOOD))
    assert not matches_schema(json.dumps(GOOD)[:-1])  # cut short
    assert not matches_schema(json.dumps({**GOOD, "extra": 1}))
    assert not matches_schema(json.dumps({**GOOD, "rating": 11}))
    assert not matches_schema(json.dumps({**GOOD, "tags": ["x" * 17]}))
    assert not matches_schema(json.dumps({**GOOD, "title": 5}))


def test_the_cost_is_the_free_rate_over_the_constrained_one() -> None:
    def sample(constrained: bool, rate: float, parses: bool | None = None) -> StructuredSample:
        return StructuredSample("v", "greedy", constrained, 0, rate, 50, parses)

    outcome = StructuredOutcome(
        [
            sample(False, 100.0),
            sample(False, 80.0),
            sample(True, 90.0, True),
            sample(True, 70.0, False),
            sample(True, 80.0, True),
        ]
    )
    (row,) = summarize_structured(outcome)
    assert (row.free_tokens_per_s, row.constrained_tokens_per_s) == (90.0, 80.0)
    assert row.cost == 90.0 / 80.0
    assert (row.parsed, row.answers) == (2, 3)
