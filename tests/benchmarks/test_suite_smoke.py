"""A smoke run of the whole suite on tiny settings (Shard only): every section's code path runs
against real servers and scouts, and the report says what a full run's would. Smoke mode
runs greedy and temperature 0.7 at 1 client, a 2-turn chat and the embedded model's weight type
(Q4_K_M) alone."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scouts import shard_scout_missing

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("bench")  # its own store and logs, beside any real run
    output = work / "benchmarks.md"
    # the grounded `scout` mode is left to full runs (scouts run in the failures section)
    command = [
        *(sys.executable, "-m", "benchmarks.suite", "--smoke", "--servers", "shard"),
        *("--grounded-modes", "off,ngram,prediction"),
    ]
    result = subprocess.run(
        [*command, "--output", str(output), "--cache-dir", str(work)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output.read_text()


@pytest.fixture(scope="module")
def scouts_missing() -> str | None:
    """Why `shard scout` cannot run here (the suite then skips scouts), or None."""
    return shard_scout_missing()


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text, re.MULTILINE)
    assert match is not None, f"{pattern!r} not in:\n{text}"
    return float(match.group(1))


def test_comparison_reports_throughput_latency_and_first_token(report: str) -> None:
    assert "python -m benchmarks.suite --smoke --servers shard" in report
    assert (
        "| server | tokens/s | range | latency p50 (s) | latency p95 (s) | TTFT p50 (s)" in report
    )
    assert _number(r"^\| shard \| ([0-9.]+) \| [0-9.]+-[0-9.]+ \|", report) > 0
    ttft = _number(
        r"^\| shard \| [0-9.]+ \| [0-9.-]+ \| [0-9.]+ \| [0-9.]+ \| ([0-9.]+) \|", report
    )
    latency = _number(r"^\| shard \| [0-9.]+ \| [0-9.-]+ \| ([0-9.]+) \|", report)
    assert 0 < ttft <= latency
    assert _number(r"^#### Single-stream decode\n(?:.*\n)*?\| shard \| ([0-9.]+) \|", report) > 0
    sampled = r"^### Temperature 0\.7\n(?:.*\n)*?\| shard \| ([0-9.]+) \| [0-9.]+-[0-9.]+ \|"
    assert _number(sampled, report) > 0


def test_multi_turn_reports_time_to_first_token_per_turn(report: str) -> None:
    assert "## Multi-turn chat: time to first token as the history grows" in report
    # turn | prompt tokens (shard) | cached tokens (shard) | TTFT shard (s)
    turns = re.findall(r"^\| ([12]) \| ([0-9]+) \| ([0-9]+) \| ([0-9.]+) \|$", report, re.M)
    assert [turn[0] for turn in turns] == ["1", "2"], report
    assert int(turns[1][1]) > int(turns[0][1])  # the history grew
    assert all(float(turn[3]) > 0 for turn in turns)
    assert "TTFT at the last two turns" not in report  # no llama-server in smoke runs


def test_grounded_output_is_byte_identical_with_drafts(report: str) -> None:
    modes = ["ngram", "prediction"]
    for task in ("code edit", "extraction"):
        off = rf"^\| {task} \| off \| [0-9.]+ \| 1\.00x \| [0-9.]+ \| 1\.00x \| yes \|"
        assert re.search(off, report, re.M)
        for mode in modes:
            row = rf"^\| {task} \| {mode} \| ([0-9.]+) \| [0-9.]+x \| [0-9.]+ \| [0-9.]+x \| yes \|"
            assert _number(row, report) > 0
    assert "Shard's greedy output was byte-identical to drafts off in every mode and run." in report


def test_scout_failures_are_measured_or_skipped_with_a_reason(
    report: str, scouts_missing: str | None
) -> None:
    assert "## Scout failures" in report
    if scouts_missing:
        assert "The dead scout was skipped: `python -m shard scout --help`" in report
        return
    assert _number(r"^\| none \| ([0-9.]+) \| 1\.00x \|", report) > 0
    for scenario in ("dead", "slow", "hostile"):  # measured, or cut off below a bound
        assert _number(rf"^\| {scenario} \| (?:< )?([0-9.]+) \| (?:< )?[0-9.]+x \|", report) > 0
    for scenario in ("dead", "slow", "hostile"):
        found = re.search(rf"Beside a {scenario} scout, throughput was (under )?[0-9.]+x", report)
        assert found, scenario


def test_weight_types_measures_the_embedded_type_alone(report: str) -> None:
    assert "## Weight types: exactness and kernel costs" in report
    assert re.search(r"^Build: llama-cpp-python [0-9.]+ from `.+`, llamafile \*\*o", report, re.M)
    # type | MiB | exact as is | exact padded | Shard pads | prompt tok/s | padded | 6 steps
    row = re.search(
        r"^\| Q4_K_M \| [0-9]+ \| yes \| yes \| no \| ([0-9]+) \| ([0-9]+) \| "
        r"([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \| "
        r"([0-9.]+)x \| ([0-9.]+)x \|",
        report,
        re.M,
    )
    assert row is not None, report
    assert all(float(value) > 0 for value in row.groups())
    assert re.findall(r"^\| (\w+) \| [0-9]+ \| (?:yes|no) \|", report, re.M) == ["Q4_K_M"]


def test_structured_outputs_report_a_constrained_tokens_cost(report: str) -> None:
    assert "## Structured outputs: the cost of a constrained token" in report
    for sampling in ("greedy", "T=0.7"):  # smoke: Shard with drafts off alone
        row = re.search(
            rf"^\| shard, drafts off \| {re.escape(sampling)} \| ([0-9.]+) \| ([0-9.]+) \| "
            r"([0-9.]+)x \| [0-9]+/1 \|",
            report,
            re.M,
        )
        assert row is not None, report
        assert all(float(value) > 0 for value in row.groups())
    assert "| shard | greedy |" not in report
