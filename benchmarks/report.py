"""Turn measured results into the Markdown report (docs/benchmarks.md).

The report carries everything needed to judge and repeat a run: machine, model, versions and
the exact command. It shows only what was measured; a server, mode or scout that could not be
measured is named as such, with the reason.
"""

import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks.grounded import (
    DRAFT_SOURCES,
    REFERENCE_MODE,
    GroundedOutcome,
    GroundedPlan,
    summarize_grounded,
)
from benchmarks.harness import Journal
from benchmarks.scout_failures import (
    DEAD_SCOUT_BUDGET,
    NO_SCOUT,
    FailureOutcome,
    FailurePlan,
    summarize_failures,
)
from benchmarks.throughput import ComparisonPlan
from benchmarks.workload import LevelResult, LevelSummary, summarize

PEERS: tuple[str, ...] = ("llama-server", "llama-cpp-python")


@dataclass
class RunInfo:
    """Context of one suite run, gathered before measuring."""

    command: str
    model: Path
    threads: int
    parallel: int
    ctx_per_sequence: int
    runs: int
    max_other_cpu: float
    retries: int
    llama_server_version: str | None = None
    started_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M"))


@dataclass
class SuiteResults:
    """Everything one run produced; a section that was not asked for is None."""

    info: RunInfo
    journal: Journal
    comparison_plan: ComparisonPlan | None = None
    comparison: list[LevelResult] = field(default_factory=list)
    grounded_plan: GroundedPlan | None = None
    grounded: GroundedOutcome | None = None
    failure_plan: FailurePlan | None = None
    failures: FailureOutcome | None = None


def cpu_model() -> str:
    """The CPU as /proc/cpuinfo names it (Linux); the platform string elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    """Installed version of a distribution, or `not installed`."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _seconds(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _yes_no(value: bool | None) -> str:
    return "n/a" if value is None else "yes" if value else "**NO**"


def _ratio_line(rows: dict[str, float | None]) -> str:
    """Shard's figure over each peer's, for the peers measured alongside it."""
    shard = rows.get("shard")
    if shard is None:
        return ""
    parts = [
        f"Shard / {peer}: {shard / peer_value:.2f}x"
        for peer in PEERS
        if (peer_value := rows.get(peer))
    ]
    return " · ".join(parts)


def _setup(results: SuiteResults) -> list[str]:
    info = results.info
    size_mib = info.model.stat().st_size / 2**20
    lines = [
        "## Setup",
        "",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}",
        f"- Model: `{info.model.name}` ({size_mib:.1f} MiB)",
        f"- Python {platform.python_version()}, llama-cpp-python "
        f"{package_version('llama_cpp_python')}, shard {package_version('shard')}"
        + (f", llama-server {info.llama_server_version}" if info.llama_server_version else ""),
        f"- Every figure is the median of {info.runs} run{'s' if info.runs != 1 else ''}. "
        "Every request is a greedy (`temperature: 0`) streaming chat completion "
        "(`stream: true`) with a distinct prompt, sent by clients that each send their "
        "requests back to back. Time to first token (TTFT) is from sending the request to the "
        "first chunk with non-empty content; single-stream decode rate is (tokens - 1) over "
        "the time between the first and the last content chunk. Tokens are the server's own "
        "streamed `usage.completion_tokens` (Shard, llama-server); llama-cpp-python's server "
        "sends no usage when streaming and streams one token per chunk, so its chunks are "
        "counted.",
        f"- Every server: {info.threads} threads, {info.ctx_per_sequence} tokens of context "
        f"per sequence; Shard and llama-server decode up to {info.parallel} sequences "
        "together, llama-cpp-python's server handles one request at a time.",
        "",
        "Commands (`PORT` is a free port picked per run; `KEY` the benchmark's API key):",
        "",
    ]
    for name, command in results.journal.launch_commands.items():
        lines.append(f"- {name}: `{command}`")
    for name, reason in results.journal.failures.items():
        lines.append(f"- **{name} was not measured**: {reason}")
    if results.journal.busy_before:
        shown = ", ".join(
            f"{name} {busy:.0%}" for name, busy in results.journal.busy_before.items()
        )
        lines += [
            "",
            f"CPU busy just before each server started: {shown}. The `other CPU` column is "
            "the share of all cores that processes other than the server, its scouts and the "
            "benchmark used while measuring; a measurement disturbed by more than "
            f"{info.max_other_cpu:.0%} was taken again (up to {info.retries} times) and the "
            "last attempt counts.",
        ]
    return lines


def _image(plot: Path | None, caption: str) -> list[str]:
    return [f"![{caption}]({plot.name})", ""] if plot is not None else []


def _comparison(results: SuiteResults, plot: Path | None) -> list[str]:
    plan = results.comparison_plan
    assert plan is not None
    workload = (
        f"{plan.duration_s:g} s per level and run"
        if plan.duration_s
        else f"{plan.requests_per_client} requests per client per run"
    )
    lines = [
        "## Shard against llama.cpp's servers",
        "",
        f"{', '.join(f'`{server}`' for server in plan.servers)} in turn, at "
        f"{', '.join(str(c) for c in plan.clients)} concurrent clients; max_tokens "
        f"{plan.max_tokens}, {workload}, one warm-up request per server before measuring. "
        "tokens/s is aggregate completion tokens over wall-clock time, all clients together; "
        "the range is the slowest and fastest run.",
        "",
    ]
    lines += _image(plot, "tokens/s and time to first token vs concurrent clients")
    summaries = summarize(results.comparison)
    for clients in plan.clients:
        row = {s.server: s for s in summaries if s.clients == clients}
        if not row:
            continue
        lines += [
            f"### {clients} concurrent client{'s' if clients != 1 else ''}",
            "",
            "| server | tokens/s | range | latency p50 (s) | latency p95 (s) | TTFT p50 (s) "
            "| TTFT p95 (s) | requests per run | other CPU |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for server in plan.servers:
            if (s := row.get(server)) is not None:
                lines.append(
                    f"| {server} | {s.tokens_per_s:.1f} | {s.tokens_per_s_min:.1f}-"
                    f"{s.tokens_per_s_max:.1f} | {s.latency_p50_s:.2f} | {s.latency_p95_s:.2f} "
                    f"| {s.ttft_p50_s:.3f} | {s.ttft_p95_s:.3f} | {s.requests} "
                    f"| {_share(s.other_cpu)} |"
                )
        lines.append("")
        if ratios := _ratio_line({name: s.tokens_per_s for name, s in row.items()}):
            lines += [f"Throughput {ratios}", ""]
    lines += _single_stream(plan, summaries)
    return lines


def _single_stream(plan: ComparisonPlan, summaries: Sequence[LevelSummary]) -> list[str]:
    single = {s.server: s for s in summaries if s.clients == 1}
    if not single:
        return []
    lines = [
        "### Single-stream decode",
        "",
        "One client; decode tokens/s of each request (median over requests, then over runs).",
        "",
        "| server | decode tokens/s | TTFT p50 (s) |",
        "|---|---:|---:|",
    ]
    for server in plan.servers:
        if (s := single.get(server)) is not None:
            lines.append(f"| {server} | {_rate(s.decode_tokens_per_s)} | {s.ttft_p50_s:.3f} |")
    lines.append("")
    if ratios := _ratio_line({name: s.decode_tokens_per_s for name, s in single.items()}):
        lines += [f"Decode {ratios}", ""]
    return lines


def _acceptance(counts_proposed: float, counts_accepted: float) -> str:
    if not counts_proposed:
        return "none proposed"
    return f"{counts_accepted / counts_proposed:.0%} ({counts_accepted:.0f}/{counts_proposed:.0f})"


def _grounded(results: SuiteResults, plot: Path | None) -> list[str]:
    plan, outcome = results.grounded_plan, results.grounded
    assert plan is not None and outcome is not None
    lines = [
        "## Input-grounded tasks: drafts",
        "",
        "Prompts whose answer copies from the prompt, answered by Shard alone, greedily, one "
        f"client, max_tokens {plan.max_tokens}:",
        "",
    ]
    lines += [f"- {task.name}: {task.description}" for task in outcome.tasks]
    lines += [
        "",
        "Modes: `off` = no drafts (`--draft-max 0 --no-ngram-drafts`), the reference; "
        "`ngram` = default flags (n-gram lookup in the context); `scout` = default flags and "
        "one `shard scout` beside the oracle. tokens/s is completion tokens over the whole "
        "request, prompt processing included; decode tokens/s leaves out the time to the first "
        "token (prompt processing, which drafts do not change), as in single-stream decode "
        "above. Acceptance is accepted over proposed draft "
        "tokens from the oracle's `shard_draft_tokens_accepted_total` and "
        "`shard_draft_tokens_proposed_total` counters, read before and after each request. "
        "Greedy output must be byte-identical with and without drafts." + _scout_mode(outcome),
        "",
    ]
    lines += _image(plot, "tokens/s per task and drafts mode")
    rows = summarize_grounded(outcome)
    if rows:
        lines += [
            "| task | drafts | tokens/s | speedup vs off | decode tokens/s | decode speedup "
            "| output identical to off | tokens | n-gram acceptance | scout acceptance "
            "| other CPU |",
            "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for task in outcome.tasks:
            for row in (r for r in rows if r.task == task.name):
                cells = [
                    _acceptance(row.drafts.proposed.get(s, 0.0), row.drafts.accepted.get(s, 0.0))
                    for s in DRAFT_SOURCES
                ]
                lines.append(
                    f"| {row.task} | {row.mode} | {row.tokens_per_s:.1f} | {_times(row.speedup)} "
                    f"| {_rate(row.decode_tokens_per_s)} | {_times(row.decode_speedup)} "
                    f"| {_yes_no(row.identical)} | {row.completion_tokens} | {cells[0]} "
                    f"| {cells[1]} | {_share(outcome.other_cpu.get(row.mode))} |"
                )
        lines.append("")
        compared = [
            r.identical for r in rows if r.mode != REFERENCE_MODE and r.identical is not None
        ]
        if compared:
            verdict = (
                "byte-identical to drafts off in every mode and run"
                if all(compared)
                else "**NOT byte-identical to drafts off** (see the table): a losslessness bug"
            )
            lines += [f"Greedy output was {verdict}.", ""]
    for mode, reason in outcome.skipped.items():
        lines += [f"Mode `{mode}` was skipped: {reason}.", ""]
    for mode, reason in outcome.stopped.items():
        lines += [
            f"Mode `{mode}` was stopped ({reason}); its rows above, if any, are what it "
            "measured before.",
            "",
        ]
    return lines


def _scout_mode(outcome: GroundedOutcome) -> str:
    if not outcome.scout_oracle_threads:
        return ""
    return (
        f" In the `scout` mode the oracle runs on {outcome.scout_oracle_threads} thread(s) and "
        "the scout on the other core(s), as if on a machine of its own; its speedup is still "
        "over `off` on all the cores. The scout drafts with the oracle's own model, so it "
        "cannot run ahead of the oracle: scouts pay where their model is much smaller than "
        "the oracle's, and here the row shows acceptance and byte-identity."
    )


def _failures(results: SuiteResults, plot: Path | None) -> list[str]:
    plan, outcome = results.failure_plan, results.failures
    assert plan is not None and outcome is not None
    lines = [
        "## Scout failures",
        "",
        f"Shard with n-gram drafts off (`--no-ngram-drafts`), {plan.clients} concurrent clients "
        f"sending {plan.requests_per_client} request(s) each per run, max_tokens "
        f"{plan.max_tokens}; first with no scout, then beside one bad scout at a time: `dead` "
        "joins and never answers (`python -m benchmarks.dead_scout`), `slow` answers 200 ms "
        "late (`shard scout --added-latency-ms 200`), `hostile` drafts random token ids "
        "(`shard scout --hostile random`). The oracle runs on "
        f"{outcome.oracle_threads} thread(s) in every scenario, and a drafting scout on the "
        "other core(s), so that the scout's model does not take the oracle's cores (a real "
        "scout runs on a machine of its own); throughput is therefore lower than in the "
        "comparison above. "
        f"Target: a dead scout costs less than {DEAD_SCOUT_BUDGET:.0%} of throughput.",
        "",
    ]
    lines += _image(plot, "tokens/s beside each bad scout")
    rows = summarize_failures(outcome, plan)
    if rows:
        lines += [
            "| scout | tokens/s | vs no scout | latency p50 (s) | TTFT p50 (s) "
            "| scout drafts accepted | still connected after each run | other CPU |",
            "|---|---:|---:|---:|---:|---:|---|---:|",
        ]
        for row in rows:
            accepted = _acceptance(
                row.drafts.proposed.get("scout", 0.0), row.drafts.accepted.get("scout", 0.0)
            )
            rate, ratio = _rate(row.tokens_per_s), _times(row.ratio)
            if row.below is not None:
                rate, ratio = f"< {row.below:.1f}", f"< {ratio}"
            lines.append(
                f"| {row.scenario} | {rate} | {ratio} | {_seconds(row.latency_p50_s, 2)} "
                f"| {_seconds(row.ttft_p50_s, 3)} | {accepted} "
                f"| {_yes_no(row.connected_throughout)} | {_share(row.other_cpu)} |"
            )
        lines.append("")
        if any(row.below is not None for row in rows):
            lines += [
                f"`< X`: a run did not finish within {plan.time_limit_s:g} s, so the scenario "
                "was stopped there; its throughput was below the rate that would have "
                "finished in time.",
                "",
            ]
        dead = next((r for r in rows if r.scenario == "dead" and r.ratio is not None), None)
        if dead is not None and dead.ratio is not None:
            cost = 1 - dead.ratio
            met = "met" if cost < DEAD_SCOUT_BUDGET else "**not met**"
            under = "under " if dead.below is not None else ""
            lines += [
                f"Beside a dead scout, throughput was {under}{dead.ratio:.2f}x the no-scout "
                f"throughput (a cost of {'over ' if under else ''}{cost:.1%}): target "
                f"(< {DEAD_SCOUT_BUDGET:.0%}) {met}.",
                "",
            ]
    for scenario, reason in outcome.skipped.items():
        name = "The no-scout baseline" if scenario == NO_SCOUT else f"The {scenario} scout"
        lines += [f"{name} was skipped: {reason}.", ""]
    return lines


def results_markdown(results: SuiteResults, plots: dict[str, Path]) -> str:
    """The measured sections alone (also printed at the end of a run). `plots` maps a
    section (comparison, grounded, failures) to its image, for those that have one."""
    lines: list[str] = []
    if results.comparison_plan is not None:
        lines += _comparison(results, plots.get("comparison"))
    if results.grounded is not None:
        lines += _grounded(results, plots.get("grounded"))
    if results.failures is not None:
        lines += _failures(results, plots.get("failures"))
    return "\n".join(lines)


def markdown(results: SuiteResults, plots: dict[str, Path]) -> str:
    """The full report as Markdown."""
    lines = [
        "# Benchmarks",
        "",
        f"Measured {results.info.started_at} UTC. Reproduce from the repository root with:",
        "",
        "```sh",
        results.info.command,
        "```",
        "",
        *_setup(results),
        "",
        results_markdown(results, plots),
    ]
    return "\n".join(lines)
