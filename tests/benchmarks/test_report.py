"""The report shows medians, ratios, the byte-identity verdict and the targets (sampled
throughput, dead scout), and says what was skipped and why."""

import dataclasses
from pathlib import Path

import pytest

from benchmarks.grounded import GroundedOutcome, GroundedPlan, GroundedSample, grounded_tasks
from benchmarks.harness import Journal
from benchmarks.oracle_metrics import DraftCounts
from benchmarks.report import RunInfo, SuiteResults, markdown
from benchmarks.scout_failures import FailureOutcome, FailurePlan, FailureRun
from benchmarks.throughput import ComparisonPlan
from benchmarks.workload import LevelResult, percentile, summarize


def level(
    server: str, clients: int, tokens: int, elapsed: float = 10.0, sampling: str = "greedy"
) -> LevelResult:
    return LevelResult(
        server=server,
        sampling=sampling,
        clients=clients,
        requests=2 * clients,
        completion_tokens=tokens,
        elapsed_s=elapsed,
        latency_p50_s=1.0,
        latency_p95_s=1.5,
        ttft_p50_s=0.05,
        ttft_p95_s=0.08,
        decode_tokens_per_s=tokens / 10.0,
        tokens_from_usage=server != "llama-cpp-python",
        other_cpu=0.01,
    )


def test_summaries_are_medians_over_runs() -> None:
    runs = [level("shard", 4, tokens) for tokens in (1000, 3000, 1200)]
    (summary,) = summarize(runs)
    assert summary.runs == 3
    assert summary.tokens_per_s == pytest.approx(120.0)
    assert (summary.tokens_per_s_min, summary.tokens_per_s_max) == (100.0, 300.0)
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.95) == 4.0


def sample(mode: str, task: str, text: str, latency: float, drafts: DraftCounts) -> GroundedSample:
    # the first token comes after 0.2 s of prompt processing in every mode
    return GroundedSample(mode, task, 0, text, 100, latency, drafts, 99 / (latency - 0.2))


@pytest.fixture
def results(tmp_path: Path) -> SuiteResults:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"\0" * 1024)
    info = RunInfo("python -m benchmarks.suite", model, 2, 8, 2048, 3, 0.05, 2)
    journal = Journal(launch_commands={"shard": "python -m shard oracle"})
    journal.failures["llama-cpp-python"] = "exited with code 1"
    tasks = grounded_tasks()
    ngram = DraftCounts({"ngram": 50.0}, {"ngram": 40.0})
    grounded = GroundedOutcome(
        tasks,
        samples=[
            sample("off", tasks[0].name, "same", 2.0, DraftCounts()),
            sample("ngram", tasks[0].name, "same", 1.0, ngram),
        ],
        skipped={"scout": "`python -m shard scout --help` exited with 2"},
    )
    failures = FailureOutcome(
        runs=[
            FailureRun("none", level("scout none", 4, 1000), DraftCounts(), None),
            FailureRun("dead", level("scout dead", 4, 980), DraftCounts(), True),
            FailureRun(
                "hostile", level("scout hostile", 4, 900), DraftCounts({"scout": 30.0}, {}), True
            ),
        ],
        skipped={"slow": "slow scout exited with code 2"},
        oracle_threads=1,
    )
    return SuiteResults(
        info=info,
        journal=journal,
        comparison_plan=ComparisonPlan(("shard", "llama-server"), (1, 4), 2, None, 128),
        comparison=[
            level("shard", 1, 1000),
            level("llama-server", 1, 800),
            level("shard", 4, 2000),
            level("llama-server", 4, 2500),
        ],
        grounded_plan=GroundedPlan(("off", "ngram", "scout"), 256, 60.0),
        grounded=grounded,
        failure_plan=FailurePlan(("none", "dead", "slow", "hostile"), 4, 4, 128, 60.0),
        failures=failures,
    )


def test_comparison_tables_and_ratios(results: SuiteResults) -> None:
    text = markdown(results, {"comparison": Path("benchmarks.png")})
    assert "| server | tokens/s | range | latency p50 (s) | latency p95 (s) | TTFT p50 (s)" in text
    assert "| shard | 100.0 | 100.0-100.0 | 1.00 | 1.50 | 0.050 | 0.080 | 2 | 1% |" in text
    assert "Throughput Shard / llama-server: 1.25x" in text  # 1 client
    assert "Throughput Shard / llama-server: 0.80x" in text  # 4 clients
    assert "### Greedy\n" in text and "#### 1 concurrent client\n" in text
    assert "#### Single-stream decode" in text
    assert "### Temperature 0.7" not in text  # not in the plan
    assert "Decode Shard / llama-server: 1.25x" in text
    assert "![tokens/s and time to first token vs concurrent clients](benchmarks.png)" in text
    assert "**llama-cpp-python was not measured**: exited with code 1" in text


def test_grounded_speedup_identity_and_acceptance(results: SuiteResults) -> None:
    text = markdown(results, {})
    assert (
        "| task | drafts | tokens/s | speedup vs off | decode tokens/s | decode speedup "
        "| output identical to off |" in text
    )
    # decode: 99 tokens in 1.8 s off, 0.8 s with drafts
    assert (
        "| code edit | ngram | 100.0 | 2.00x | 123.8 | 2.25x | yes | 100 | 80% (40/50) "
        "| none proposed |" in text
    )
    assert "Shard's greedy output was byte-identical to drafts off in every mode and run." in text
    assert "Mode `scout` was skipped: `python -m shard scout --help` exited with 2." in text
    assert "In the `scout` mode" not in text  # it did not run


def test_the_code_edit_with_its_prediction_is_held_to_its_targets(results: SuiteResults) -> None:
    assert results.grounded is not None
    predicted = DraftCounts({"prediction": 60.0}, {"prediction": 60.0})
    code_edit = results.grounded.tasks[0].name
    results.grounded.samples.append(sample("prediction", code_edit, "same", 0.6, predicted))
    text = markdown(results, {})
    assert "| code edit | prediction | 166.7 | 3.33x |" in text
    assert "| none proposed | 100% (60/60) | none proposed |" in text
    assert (
        "The code edit with its prediction ran at 3.33x `off` (target >= 3x): met; "
        "1.67x `ngram` (target >= 1.3x): met." in text
    )


def test_grounded_scout_mode_says_where_the_scout_ran(results: SuiteResults) -> None:
    assert results.grounded is not None
    results.grounded.scout_oracle_threads = 1
    text = markdown(results, {})
    assert "In the `scout` mode the oracle runs on 1 thread(s) and the scout on the other" in text


def test_grounded_difference_is_flagged(results: SuiteResults) -> None:
    assert results.grounded is not None
    results.grounded.samples.append(
        GroundedSample("ngram", "code edit", 1, "different", 100, 1.0, DraftCounts())
    )
    text = markdown(results, {})
    assert "| code edit | ngram | 100.0 | 2.00x | 123.8 | 2.25x | **NO** |" in text
    assert "**NOT byte-identical to drafts off**" in text


def test_scout_failures_against_the_baseline(results: SuiteResults) -> None:
    text = markdown(results, {})
    assert "| dead | 98.0 | 0.98x | 1.00 | 0.050 | none proposed | yes |" in text
    assert "| hostile | 90.0 | 0.90x | 1.00 | 0.050 | 0% (0/30) | yes |" in text
    assert (
        "Beside a dead scout, throughput was 0.98x the no-scout throughput (a cost of 2.0%): "
        "target (< 5%) met." in text
    )
    assert (
        "Beside a hostile scout, throughput was 0.90x the no-scout throughput (a cost of "
        "10.0%): target (< 5%) **not met**." in text
    )
    assert "The slow scout was skipped: slow scout exited with code 2." in text
    assert "The oracle runs on 1 thread(s) in every scenario" in text
    assert "Processes were not pinned to cores" in text
    assert results.failures is not None
    results.failures.pins = ("0", "1")
    pinned = markdown(results, {})
    assert "The oracle process is pinned to core(s) 0 and each scout to 1" in pinned


def test_a_scenario_cut_off_at_the_time_limit_shows_a_bound(results: SuiteResults) -> None:
    assert results.failures is not None and results.grounded is not None
    results.failures.runs.append(FailureRun("slow", None, DraftCounts(), False))
    results.grounded.stopped["ngram"] = "answering the code edit task took more than 60 s"
    text = markdown(results, {})
    # 4 clients x 4 requests x 128 tokens in 60 s: below 34.1 tokens/s, 0.34x the baseline
    assert "| slow | < 34.1 | < 0.34x | n/a | n/a | none proposed | **NO** | n/a |" in text
    assert "`< X`: a run did not finish within 60 s" in text
    assert "Mode `ngram` was stopped (answering the code edit task took more than 60 s)" in text


def test_summaries_are_grouped_by_sampling() -> None:
    runs = [
        level("shard", 8, 1000),
        level("shard", 8, 3000, sampling="sampled"),
        level("shard", 8, 1200),
        level("shard", 8, 2000, sampling="sampled"),
    ]
    greedy, sampled = summarize(runs)
    assert (greedy.sampling, greedy.runs, greedy.tokens_per_s) == ("greedy", 2, 110.0)
    assert (sampled.sampling, sampled.runs, sampled.tokens_per_s) == ("sampled", 2, 250.0)


@pytest.fixture
def sampled(results: SuiteResults) -> SuiteResults:
    """The comparison with every preset: greedy and temperature 0.7 at 1 and 8 clients, the
    processed presets at 8 only; llama-server-ngram a third peer."""
    results.comparison_plan = ComparisonPlan(
        ("shard", "llama-cpp-python", "llama-server", "llama-server-ngram"),
        (1, 8),
        2,
        None,
        128,
        samplings=("greedy", "sampled", "top-p", "presence"),
        processed_clients=(8,),
    )
    results.comparison = [
        level("shard", 1, 1000),
        level("llama-server", 1, 800),
        level("llama-server-ngram", 1, 400),
        level("llama-cpp-python", 1, 500),
        level("shard", 8, 1600),
        level("llama-server", 8, 1500),
        # temperature 0.7: Shard wins at 1 client, loses at 8
        level("shard", 1, 900, sampling="sampled"),
        level("llama-server", 1, 600, sampling="sampled"),
        level("llama-server-ngram", 1, 1200, sampling="sampled"),
        level("shard", 8, 1400, sampling="sampled"),
        level("llama-server", 8, 1750, sampling="sampled"),
        level("shard", 8, 1300, sampling="top-p"),
        level("llama-server", 8, 1000, sampling="top-p"),
    ]
    return results


def _section(text: str, heading: str) -> str:
    """The text from a `### ` heading to the next one at the same level or above."""
    start = text.index(heading + "\n")
    ends = [text.find(mark, start + len(heading)) for mark in ("\n### ", "\n## ")]
    return text[start : min([end for end in ends if end != -1], default=len(text))]


def test_each_sampling_has_its_tables_ratios_and_decode(sampled: SuiteResults) -> None:
    text = markdown(sampled, {})
    assert (
        "- greedy: `temperature: 0`, sent to `shard`, `llama-cpp-python`, `llama-server`, "
        "`llama-server-ngram` at 1 and 8 concurrent clients" in text
    )
    assert (
        "- temperature 0.7: `temperature: 0.7`, sent to `shard`, `llama-server`, "
        "`llama-server-ngram` at 1 and 8 concurrent clients" in text
    )
    assert (
        "- temperature 0.7, top_p 0.9: `temperature: 0.7`, `top_p: 0.9`, sent to `shard`, "
        "`llama-server` at 8 concurrent clients" in text
    )
    greedy = _section(text, "### Greedy")
    assert (
        "Throughput Shard / llama-server: 1.25x · Shard / llama-server-ngram: 2.50x · "
        "Shard / llama-cpp-python: 2.00x" in greedy
    )
    assert "| llama-server-ngram | 40.0 | 40.0-40.0 |" in greedy
    assert "Decode Shard / llama-server: 1.25x · Shard / llama-server-ngram: 2.50x" in greedy
    warm = _section(text, "### Temperature 0.7")
    assert "| shard | 90.0 | 90.0-90.0 |" in warm and "| llama-cpp-python |" not in warm
    assert "Throughput Shard / llama-server: 1.50x · Shard / llama-server-ngram: 0.75x" in warm
    assert "Throughput Shard / llama-server: 0.80x" in warm  # 8 clients: Shard is slower
    assert "#### Single-stream decode" in warm
    top_p = _section(text, "### Temperature 0.7, top_p 0.9")
    assert "#### 1 concurrent client" not in top_p  # processed presets: 8 clients only
    assert "#### 8 concurrent clients" in top_p
    assert "Throughput Shard / llama-server: 1.30x" in top_p
    assert "### Temperature 0.7, presence_penalty 0.5" not in text  # chosen, nothing measured


def test_the_sampled_target_is_met_or_not_per_level(sampled: SuiteResults) -> None:
    text = markdown(sampled, {})
    assert (
        "At temperature 0.7 and 1 concurrent client, Shard's throughput was 1.50x "
        "llama-server's: target (>= 1.0x) met." in text
    )
    assert (
        "At temperature 0.7 and 8 concurrent clients, Shard's throughput was 0.80x "
        "llama-server's: target (>= 1.0x) **not met**." in text
    )
    assert "target (>= 1.0x)" not in _section(text, "### Greedy")


def test_the_ngram_peer_is_explained_beside_its_command(results: SuiteResults) -> None:
    results.journal.launch_commands["llama-server-ngram"] = "llama-server --spec-type ngram-mod"
    results.journal.launch_commands["shard, multi-turn"] = "python -m shard oracle"
    text = markdown(results, {})
    assert "- llama-server-ngram: `llama-server --spec-type ngram-mod`" in text
    assert "every other speculative setting is left at its default" in text
    assert "- shard, multi-turn: as shard\n" in text


def test_grounded_peers_compare_without_judging_losslessness(results: SuiteResults) -> None:
    assert results.grounded is not None and results.grounded_plan is not None
    results.grounded_plan = GroundedPlan(("off", "ngram", "llama-server-ngram"), 256, 60.0)
    # the peer's text differs from Shard's: information, not a bug
    results.grounded.samples += [
        sample("llama-server-ngram", "code edit", "other", 1.25, DraftCounts()),
        sample("llama-server", "code edit", "same", 4.0, DraftCounts()),
    ]
    results.grounded.samples[-2:] = [
        dataclasses.replace(s, drafts=None) for s in results.grounded.samples[-2:]
    ]
    text = markdown(results, {})
    # whole request 100/1.25 s = 80 tokens/s; decode 99/1.05 s
    assert (
        "| code edit | llama-server-ngram | 80.0 | 1.60x | 94.3 | 1.71x | no | 100 | n/a | n/a |"
        in text
    )
    assert (
        "| code edit | llama-server | 25.0 | 0.50x | 26.1 | 0.47x | yes | 100 | n/a | n/a |" in text
    )
    # ngram: 100 tokens/s and 123.8 decode; off: 50 and 55.0; llama-server: 25 and 26.1
    assert (
        "code edit: Shard ngram / llama-server-ngram: whole request 1.25x, decode 1.31x · "
        "Shard off / llama-server: whole request 2.00x, decode 2.11x" in text
    )
    assert "compares its text with Shard's drafts-off text" in text
    assert "Shard's greedy output was byte-identical to drafts off in every mode and run." in text
