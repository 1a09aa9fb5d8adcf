"""Draft acceptance and the scout count are read from the oracle's Prometheus text."""

from benchmarks.oracle_metrics import DraftCounts, parse_draft_counts, parse_scouts_connected

EXPOSITION = """\
# HELP shard_draft_tokens_proposed_total Draft tokens offered for verification, by source
# TYPE shard_draft_tokens_proposed_total counter
shard_draft_tokens_proposed_total{source="ngram"} 120.0
shard_draft_tokens_proposed_total{source="scout"} 40.0
# HELP shard_draft_tokens_accepted_total Draft tokens the oracle's own sampling confirmed
# TYPE shard_draft_tokens_accepted_total counter
shard_draft_tokens_accepted_total{source="ngram"} 90.0
shard_draft_tokens_accepted_total{source="scout"} 10.0
# HELP shard_scouts_connected Scouts connected now
# TYPE shard_scouts_connected gauge
shard_scouts_connected 2.0
"""


def test_counters_are_read_by_source() -> None:
    counts = parse_draft_counts(EXPOSITION)
    assert counts.proposed == {"ngram": 120.0, "scout": 40.0}
    assert counts.accepted == {"ngram": 90.0, "scout": 10.0}
    assert parse_scouts_connected(EXPOSITION) == 2


def test_acceptance_is_the_change_over_a_workload() -> None:
    before = DraftCounts({"ngram": 100.0}, {"ngram": 80.0})
    after = parse_draft_counts(EXPOSITION)
    delta = after.since(before)
    assert delta.acceptance("ngram") == 10.0 / 20.0
    assert delta.acceptance("scout") == 10.0 / 40.0
    assert DraftCounts().acceptance("scout") is None


def test_counts_add_up_over_requests() -> None:
    total = DraftCounts({"ngram": 4.0}, {"ngram": 3.0}) + DraftCounts({"scout": 2.0}, {})
    assert total.proposed == {"ngram": 4.0, "scout": 2.0}
    assert total.accepted == {"ngram": 3.0, "scout": 0.0}


def test_an_oracle_without_the_gauge_says_so() -> None:
    assert parse_scouts_connected("# nothing here\n") is None
    assert parse_draft_counts("").proposed == {}
