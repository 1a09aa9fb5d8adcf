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
    PEER_MODES,
    PREDICTION_TARGETS,
    REFERENCE_MODE,
    SHARD_MODES,
    GroundedOutcome,
    GroundedPlan,
    GroundedRow,
    drafts_changed_output,
    summarize_grounded,
)
from benchmarks.harness import Journal
from benchmarks.multi_turn import (
    FLAT_FROM_TURN,
    FLAT_LIMIT,
    FOLLOW_UPS,
    OPENING,
    TEMPERATURE,
    TTFT_TARGET,
    MultiTurnOutcome,
    MultiTurnPlan,
    TurnRow,
    growth,
    last_turns_ratio,
    summarize_multi_turn,
)
from benchmarks.sampling import SAMPLED, SAMPLINGS, Sampling
from benchmarks.scout_failures import (
    NO_SCOUT,
    SCOUT_COST_BUDGET,
    FailureOutcome,
    FailurePlan,
    summarize_failures,
)
from benchmarks.structured import StructuredOutcome, StructuredPlan, structured_markdown
from benchmarks.testbed import FairTestbedOutcome, FairTestbedPlan, testbed_markdown
from benchmarks.throughput import ComparisonPlan
from benchmarks.weight_types import (
    EMBEDDED_TYPE,
    LLAMAFILE_MARK,
    N_BATCH,
    N_CTX_PER_SEQ,
    N_SEQ,
    PREFIX_TOKENS,
    PROMPT_TOKENS,
    STEP_SHAPES,
    WeightTypeRow,
    WeightTypesOutcome,
    WeightTypesPlan,
)
from benchmarks.workload import LevelResult, LevelSummary, summarize

PEERS: tuple[str, ...] = ("llama-server", "llama-server-ngram", "llama-cpp-python")
SAMPLED_TARGET = 1.0  # Shard's throughput at temperature 0.7 over llama-server's, at least
SAMPLED_TARGET_CLIENTS: tuple[int, ...] = (1, 8)
# (Shard's mode, the peer's mode) pairs compared task by task: drafts against drafts, and
# plain decoding against plain decoding.
PEER_PAIRS: tuple[tuple[str, str], ...] = (
    ("ngram", "llama-server-ngram"),
    (REFERENCE_MODE, "llama-server"),
)


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
    multi_turn_plan: MultiTurnPlan | None = None
    multi_turn: MultiTurnOutcome | None = None
    weight_types_plan: WeightTypesPlan | None = None
    weight_types: WeightTypesOutcome | None = None
    structured_plan: StructuredPlan | None = None
    structured: StructuredOutcome | None = None
    testbed_plan: FairTestbedPlan | None = None
    testbed: FairTestbedOutcome | None = None
    testbed_runs: int = 1


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
        "Every request is a streaming chat completion (`stream: true`), greedy "
        "(`temperature: 0`) unless its section says otherwise, with a distinct prompt, sent by "
        "clients that each send their requests back to back. Time to first token (TTFT) is "
        "from sending the request to the first chunk with non-empty content; single-stream "
        "decode rate is (tokens - 1) over the time between the first and the last content "
        "chunk. Tokens are the server's own streamed `usage.completion_tokens` (Shard, "
        "llama-server); llama-cpp-python's server sends no usage when streaming and streams "
        "one token per chunk, so its chunks are counted.",
        f"- Every server: {info.threads} threads, {info.ctx_per_sequence} tokens of context "
        f"per sequence; Shard and llama-server decode up to {info.parallel} sequences "
        "together, llama-cpp-python's server handles one request at a time.",
    ]
    if results.journal.launch_commands:
        lines += [
            "",
            "Commands (`PORT` is a free port picked per run; `KEY` the benchmark's API key):",
            "",
        ]
    shown: dict[str, str] = {}  # command -> the first label it was listed under
    for name, command in results.journal.launch_commands.items():
        if (first := shown.get(command)) is not None:
            lines.append(f"- {name}: as {first}")
            continue
        shown[command] = name
        lines.append(f"- {name}: `{command}`")
    if any(name.startswith("llama-server-ngram") for name in results.journal.launch_commands):
        lines.append(
            "- `llama-server-ngram` is `llama-server` with `--spec-type ngram-mod` added "
            "(llama.cpp's n-gram drafts from the context, verified by the model); every other "
            "speculative setting is left at its default (`--spec-ngram-mod-n-match`, "
            "`--spec-ngram-mod-n-min`, `--spec-ngram-mod-n-max`: 24, 48 and 64 in the "
            "llama.cpp of llama-cpp-python 0.3.36)."
        )
    for name, reason in results.journal.failures.items():
        lines.append(f"- **{name} was not measured**: {reason}")
    if results.journal.busy_before:
        busy = ", ".join(
            f"{name} {share:.0%}" for name, share in results.journal.busy_before.items()
        )
        lines += [
            "",
            f"CPU busy just before each server started: {busy}. The `other CPU` column is "
            "the share of all cores that processes other than the server, its scouts and the "
            "benchmark used while measuring; a measurement disturbed by more than "
            f"{info.max_other_cpu:.0%} was taken again (up to {info.retries} times) and the "
            "last attempt counts.",
        ]
    return lines


def _image(plot: Path | None, caption: str) -> list[str]:
    return [f"![{caption}]({plot.name})", ""] if plot is not None else []


def _clients(count: int) -> str:
    return f"{count} concurrent client{'s' if count != 1 else ''}"


def _levels(levels: Sequence[int]) -> str:
    """1, 4 and 8 concurrent clients."""
    counts = [str(count) for count in levels]
    listed = " and ".join([", ".join(counts[:-1]), counts[-1]] if len(counts) > 1 else counts)
    return f"{listed} concurrent client{'s' if counts != ['1'] else ''}"


def _servers(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _sampling_plan(plan: ComparisonPlan) -> list[str]:
    """Which server ran which preset at which levels, and what the presets mean per server."""
    lines = ["Sampling presets, each in its own subsection below:", ""]
    for name in plan.samplings:
        sampling = SAMPLINGS[name]
        servers = [server for server in plan.servers if server in sampling.servers]
        if not servers:
            continue
        levels = _levels(plan.sampling_levels(sampling))
        fields = ", ".join(f"`{key}: {value:g}`" for key, value in sampling.params)
        lines.append(f"- {sampling.title}: {fields}, sent to {_servers(servers)} at {levels}")
    lines.append("")
    if any(SAMPLINGS[name].seeded for name in plan.samplings):
        lines += [
            "A sampled request carries `seed` = 1 + 1009 x client + request (both counted "
            "from 0), the same for every server, so a run can be repeated; the servers draw "
            "different random numbers from it, so their texts differ. To keep the full run "
            "near 45 minutes, llama-cpp-python's server (one request at a time) runs greedy "
            "only, and the processed presets (top_p, presence penalty) run on Shard and "
            "llama-server only, at fewer levels. Shard applies exactly the request's "
            "parameters (top_p 1 unless given). llama-server adds its own sampler defaults: "
            "top_k 40, min_p 0.05, and top_p 0.95 where the request gives none, so it samples "
            "among fewer candidates than the request asks for; its presence penalty counts the "
            "last 64 tokens (`--repeat-last-n`), Shard's every generated token.",
            "",
        ]
    return lines


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
        f"{_servers(plan.servers)} in turn, at {_levels(plan.clients)}; max_tokens "
        f"{plan.max_tokens}, {workload}, one warm-up request "
        "per server before measuring. tokens/s is aggregate completion tokens over wall-clock "
        "time, all clients together; the range is the slowest and fastest run. Every row "
        "is shown, the ones where Shard is slower too.",
        "",
    ]
    lines += _sampling_plan(plan)
    lines += _image(plot, "tokens/s and time to first token vs concurrent clients")
    summaries = summarize(results.comparison)
    for name in plan.samplings:
        sampling = SAMPLINGS[name]
        measured = [s for s in summaries if s.sampling == name]
        if measured:
            lines += _sampling_section(plan, sampling, measured)
    return lines


def _sampling_section(
    plan: ComparisonPlan, sampling: Sampling, summaries: Sequence[LevelSummary]
) -> list[str]:
    """One preset: a table per concurrency with ratio lines, single-stream decode, targets."""
    lines = [f"### {sampling.title[:1].upper()}{sampling.title[1:]}", ""]
    for clients in plan.sampling_levels(sampling):
        row = {s.server: s for s in summaries if s.clients == clients}
        if not row:
            continue
        lines += [
            f"#### {_clients(clients)}",
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
    if sampling == SAMPLED:
        lines += _sampled_targets(summaries)
    return lines


def _single_stream(plan: ComparisonPlan, summaries: Sequence[LevelSummary]) -> list[str]:
    single = {s.server: s for s in summaries if s.clients == 1}
    if not single:
        return []
    lines = [
        "#### Single-stream decode",
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


def _sampled_targets(summaries: Sequence[LevelSummary]) -> list[str]:
    """The target at temperature 0.7: at least llama-server's throughput at 1 and 8 clients."""
    lines = []
    for clients in SAMPLED_TARGET_CLIENTS:
        rate = {s.server: s.tokens_per_s for s in summaries if s.clients == clients}
        shard, peer = rate.get("shard"), rate.get("llama-server")
        target = f"target (>= {SAMPLED_TARGET:.1f}x)"
        if shard is None or not peer:
            lines.append(
                f"At {SAMPLED.title} and {_clients(clients)}, Shard and llama-server were "
                f"not both measured: {target} not checked."
            )
            continue
        ratio = shard / peer
        met = "met" if ratio >= SAMPLED_TARGET else "**not met**"
        lines.append(
            f"At {SAMPLED.title} and {_clients(clients)}, Shard's throughput was "
            f"{ratio:.2f}x llama-server's: {target} {met}."
        )
    return [part for line in lines for part in (line, "")]  # a paragraph each


def _acceptance(counts_proposed: float, counts_accepted: float) -> str:
    if not counts_proposed:
        return "none proposed"
    return f"{counts_accepted / counts_proposed:.0%} ({counts_accepted:.0f}/{counts_proposed:.0f})"


def _grounded(results: SuiteResults, plot: Path | None) -> list[str]:
    plan, outcome = results.grounded_plan, results.grounded
    assert plan is not None and outcome is not None
    peers = [mode for mode in plan.modes if mode in PEER_MODES]
    lines = [
        "## Input-grounded tasks: drafts",
        "",
        "Prompts whose answer copies from the prompt, answered greedily, one client, "
        f"max_tokens {plan.max_tokens}, by Shard"
        + (f" and by {_servers(peers)}" if peers else " alone")
        + ":",
        "",
    ]
    lines += [f"- {task.name}: {task.description}" for task in outcome.tasks]
    lines += [
        "",
        "Modes: `off` = no drafts (`--draft-max 0 --no-ngram-drafts`), the reference; "
        "`ngram` = default flags (n-gram lookup in the context); `prediction` = default "
        "flags, and each request carries the grounding text (the original code, the source "
        "prose) as its Predicted Outputs `prediction`; `scout` = default flags and "
        "one `shard scout` beside the oracle. tokens/s is completion tokens over the whole "
        "request, prompt processing included; decode tokens/s leaves out the time to the first "
        "token (prompt processing, which drafts do not change), as in single-stream decode "
        "above. Acceptance is accepted over proposed draft "
        "tokens from the oracle's `shard_draft_tokens_accepted_total` and "
        "`shard_draft_tokens_proposed_total` counters, read before and after each request. "
        "Greedy output must be byte-identical with and without drafts."
        + _peer_modes(peers)
        + _scout_mode(outcome),
        "",
    ]
    lines += _image(plot, "tokens/s per task and drafts mode")
    rows = summarize_grounded(outcome)
    if rows:
        lines += [
            "| task | drafts | tokens/s | speedup vs off | decode tokens/s | decode speedup "
            "| output identical to off | tokens | n-gram acceptance | prediction acceptance "
            "| scout acceptance | other CPU |",
            "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        for task in outcome.tasks:
            for row in (r for r in rows if r.task == task.name):
                lines.append(
                    f"| {row.task} | {row.mode} | {row.tokens_per_s:.1f} | {_times(row.speedup)} "
                    f"| {_rate(row.decode_tokens_per_s)} | {_times(row.decode_speedup)} "
                    f"| {_identical(row)} | {row.completion_tokens} | {_acceptances(row)} "
                    f"| {_share(outcome.other_cpu.get(row.mode))} |"
                )
        lines.append("")
        lines += _prediction_targets(rows)
        lines += _peer_ratios(rows, [task.name for task in outcome.tasks])
        compared = [r for r in rows if r.mode in SHARD_MODES and r.mode != REFERENCE_MODE]
        if any(r.identical is not None for r in compared):
            verdict = (
                "**NOT byte-identical to drafts off** (see the table): a losslessness bug"
                if drafts_changed_output(compared)
                else "byte-identical to drafts off in every mode and run"
            )
            lines += [f"Shard's greedy output was {verdict}.", ""]
    for mode, reason in outcome.skipped.items():
        lines += [f"Mode `{mode}` was skipped: {reason}.", ""]
    for mode, reason in outcome.stopped.items():
        lines += [
            f"Mode `{mode}` was stopped ({reason}); its rows above, if any, are what it "
            "measured before.",
            "",
        ]
    return lines


def _prediction_targets(rows: Sequence[GroundedRow]) -> list[str]:
    """The code edit given its prediction against drafts off and n-gram drafts alone."""
    by_mode = {row.mode: row for row in rows if row.task == "code edit"}
    predicted = by_mode.get("prediction")
    if predicted is None:
        return []
    parts = []
    for mode, target in PREDICTION_TARGETS.items():
        other = by_mode.get(mode)
        if other is None:
            continue
        ratio = predicted.tokens_per_s / other.tokens_per_s
        met = "met" if ratio >= target else "**not met**"
        parts.append(f"{ratio:.2f}x `{mode}` (target >= {target:g}x): {met}")
    if not parts:
        return []
    return [f"The code edit with its prediction ran at {'; '.join(parts)}.", ""]


def _identical(row: GroundedRow) -> str:
    """Shard's modes must match drafts off (**NO** is a bug); a peer's match is information."""
    if row.mode in SHARD_MODES or row.identical is None:
        return _yes_no(row.identical)
    return "yes" if row.identical else "no"


def _acceptances(row: GroundedRow) -> str:
    """The acceptance cells, one per draft source; n/a for a peer (no Shard counters)."""
    if row.drafts is None:
        return " | ".join("n/a" for _ in DRAFT_SOURCES)
    drafts = row.drafts
    return " | ".join(
        _acceptance(drafts.proposed.get(s, 0.0), drafts.accepted.get(s, 0.0)) for s in DRAFT_SOURCES
    )


def _peer_modes(peers: Sequence[str]) -> str:
    if not peers:
        return ""
    return (
        f" Peers: {_servers(peers)}, started as in the comparison, greedy too; their speedups "
        "are over Shard's `off`, and their acceptance is n/a (llama-server has no Shard draft "
        "counters). For a peer, `output identical to off` compares its text with Shard's "
        "drafts-off text: llama-server keeps llama.cpp's default kernels and KV-cache types, "
        "which Shard changes so that output does not depend on the batch, so a difference "
        "there is no losslessness bug, and the verdict below counts Shard's modes only."
    )


def _peer_ratios(rows: Sequence[GroundedRow], tasks: Sequence[str]) -> list[str]:
    """Per task: Shard's mode over the matching peer's, whole request and decode."""
    by = {(row.mode, row.task): row for row in rows}
    lines = []
    for task in tasks:
        parts = []
        for shard_mode, peer in PEER_PAIRS:
            ours, theirs = by.get((shard_mode, task)), by.get((peer, task))
            if ours is None or theirs is None:
                continue
            decode = (
                ours.decode_tokens_per_s / theirs.decode_tokens_per_s
                if ours.decode_tokens_per_s is not None and theirs.decode_tokens_per_s
                else None
            )
            parts.append(
                f"Shard {shard_mode} / {peer}: whole request "
                f"{ours.tokens_per_s / theirs.tokens_per_s:.2f}x, decode {_times(decode)}"
            )
        if parts:
            lines += [f"{task}: {' · '.join(parts)}", ""]
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
        f"{plan.max_tokens}; with no scout, then beside one bad scout at a time, a run of "
        "each per round (so that the machine's drift falls on all alike): `dead` "
        "joins and never answers (`python -m benchmarks.dead_scout`), `slow` answers 200 ms "
        "late (`shard scout --added-latency-ms 200`), `hostile` drafts random token ids "
        "(`shard scout --hostile random`). The oracle runs on "
        f"{outcome.oracle_threads} thread(s) in every scenario, and a drafting scout on the "
        "other core(s), so that the scout's model does not take the oracle's cores (a real "
        "scout runs on a machine of its own); throughput is therefore lower than in the "
        f"comparison above. {_pinned(outcome)}"
        f"Target: a dead, slow or hostile scout costs less than {SCOUT_COST_BUDGET:.0%} of "
        "throughput.",
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
        for row in rows:
            if row.scenario == NO_SCOUT or row.ratio is None:
                continue
            cost = 1 - row.ratio
            met = "met" if cost < SCOUT_COST_BUDGET else "**not met**"
            under = "under " if row.below is not None else ""
            lines += [
                f"Beside a {row.scenario} scout, throughput was {under}{row.ratio:.2f}x the "
                f"no-scout throughput (a cost of {'over ' if under else ''}{cost:.1%}): target "
                f"(< {SCOUT_COST_BUDGET:.0%}) {met}.",
                "",
            ]
    for scenario, reason in outcome.skipped.items():
        name = "The no-scout baseline" if scenario == NO_SCOUT else f"The {scenario} scout"
        lines += [f"{name} was skipped: {reason}.", ""]
    return lines


def _pinned(outcome: FailureOutcome) -> str:
    oracle, scouts = outcome.pins
    if not oracle:
        return "Processes were not pinned to cores (no taskset, or one core). "
    return (
        f"The oracle process is pinned to core(s) {oracle} and each scout to {scouts} "
        "(`taskset -c`), in every scenario, the baseline too. "
    )


def _multi_turn(results: SuiteResults) -> list[str]:
    plan, outcome = results.multi_turn_plan, results.multi_turn
    assert plan is not None and outcome is not None
    follow_ups = ", ".join(f'"{text}"' for text in FOLLOW_UPS[: plan.turns - 1])
    lines = [
        "## Multi-turn chat: time to first token as the history grows",
        "",
        f"One client holds a {plan.turns}-turn chat with each of {_servers(plan.servers)} in "
        "turn, each freshly started: "
        f'"{OPENING.format(topic="<topic>")}" (a different topic each run)'
        + (f", then {follow_ups}" if follow_ups else "")
        + ". Every turn sends the whole history, with the server's own earlier replies, "
        f"max_tokens {plan.max_tokens}, temperature {TEMPERATURE:g} and a seed fixed per "
        "(run, turn). Figures per turn are medians over runs; prompt and cached tokens are "
        "the server's streamed `usage.prompt_tokens` and "
        "`usage.prompt_tokens_details.cached_tokens` (prompt tokens it did not have to "
        "process again). Shard copies the longest cached prefix into the request's sequence; "
        "llama-server reuses its slot's cached prompt (`cache_prompt`, on by default).",
        "",
    ]
    rows = summarize_multi_turn(outcome)
    servers = [name for name in plan.servers if any(name in row.ttft_s for row in rows)]
    if rows and servers:
        ratio_to = "llama-server" if "shard" in servers and "llama-server" in servers else None
        cached = [n for n in servers if any(r.cached_tokens.get(n) is not None for r in rows)]
        header = ["turn", "prompt tokens (shard)"]
        header += [f"cached tokens ({name})" for name in cached]
        header += [f"TTFT {name} (s)" for name in servers]
        header += ["Shard / llama-server"] if ratio_to else []
        lines += [
            f"| {' | '.join(header)} |",
            "|" + "---:|" * len(header),
        ]
        for row in rows:
            cells = [str(row.turn), _count(row.prompt_tokens.get("shard"))]
            cells += [_count(row.cached_tokens.get(name)) for name in cached]
            cells += [_seconds(row.ttft_s.get(name), 3) for name in servers]
            if ratio_to:
                ours, theirs = row.ttft_s.get("shard"), row.ttft_s.get(ratio_to)
                cells.append(_times(ours / theirs if ours is not None and theirs else None))
            lines.append(f"| {' | '.join(cells)} |")
        lines.append("")
        last = rows[-1]
        prompts = ", ".join(f"{name} {_count(last.prompt_tokens.get(name))}" for name in servers)
        lines += [
            f"Prompt tokens at turn {last.turn}: {prompts} (each server's history holds its own "
            "replies, so the lengths differ).",
            "",
        ]
        lines += _multi_turn_targets(rows)
        cpu = ", ".join(f"{name} {_share(outcome.other_cpu.get(name))}" for name in servers)
        lines += [f"Other CPU while measuring: {cpu}.", ""]
    return lines


def _count(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def _multi_turn_targets(rows: Sequence[TurnRow]) -> list[str]:
    """TTFT at the last two turns against llama-server's, and whether Shard's stays flat."""
    lines = []
    ratio = last_turns_ratio(rows, "shard", "llama-server")
    turns = ", ".join(str(row.turn) for row in rows[-2:])
    if ratio is not None:
        met = "met" if ratio <= TTFT_TARGET else "**not met**"
        lines.append(
            f"TTFT at the last two turns is {ratio:.2f}x llama-server's (Shard's median TTFTs "
            f"at turns {turns} summed, over llama-server's; target <= {TTFT_TARGET:.1f}x): {met}."
        )
    rise = growth(rows, "shard")
    if rise is not None:
        met = "met" if rise <= FLAT_LIMIT else "**not met**"
        peer = growth(rows, "llama-server")
        theirs = f"; llama-server's {peer:.2f}x" if peer is not None else ""
        lines.append(
            f"Shard's TTFT at turn {rows[-1].turn} is {rise:.2f}x its TTFT at turn "
            f"{FLAT_FROM_TURN}{theirs} (flat means at most {FLAT_LIMIT:.1f}x; turn 1 has no "
            f"history to reuse, so turn {FLAT_FROM_TURN} is the base): {met}."
        )
    return [part for line in lines for part in (line, "")]  # a paragraph each


def _names(names: Sequence[str]) -> str:
    """F16, BF16 and IQ4_NL."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _weight_types(results: SuiteResults) -> list[str]:
    plan, outcome = results.weight_types_plan, results.weight_types
    assert plan is not None and outcome is not None
    build = outcome.build
    shapes = ", ".join(f"{s}x{k}" for s, k in STEP_SHAPES)
    lines = [
        "## Weight types: exactness and kernel costs",
        "",
        f"Shard's embedded model (`{outcome.source.name}`, {EMBEDDED_TYPE}) converted to each "
        "weight type with llama.cpp's `llama_model_quantize` (`allow_requantize`; the files "
        f"are kept in `{outcome.cache_dir}`); a converted model keeps {EMBEDDED_TYPE}'s values, "
        "but which kernels a type takes and what they cost depend on its storage, not on where "
        "its values came from. Each is loaded "
        "in the suite's own process, one at a time, with Shard's `LlamaModel` and "
        f"`ContextShape(n_ctx_per_seq={N_CTX_PER_SEQ}, n_seq={N_SEQ}, n_batch={N_BATCH}, "
        f"threads={plan.threads})`, so it runs Shard's kernels (flash attention, F16 K and "
        "BF16 V cache, no weight repacking, ggml's tiled matmul off).",
        "",
        "- exact as is: `drafts_are_exact(model, batch)`: a few tokens decoded one at a time "
        "get bit for bit the logits they get decoded together, as a draft is verified; "
        "exact padded: the same with `pad_single_rows=True` (every one-at-a-time decode "
        "carries a second row with logits); Shard pads: Shard's start-up check pads single "
        "rows for this type on this build (not exact as is, exact padded).",
        f"- prompt: {PROMPT_TOKENS} tokens in one decode, logits for the last token only "
        "(padded: for the last two, as Shard asks for a lone prompt's last chunk when it "
        f"pads), median of {plan.prompt_repetitions} after a warm-up.",
        f"- steps ({shapes}; ms): S sequences decoding K tokens each in one decode, every "
        f"token with logits (as verification reads them), each sequence with {PREFIX_TOKENS} "
        f"tokens already cached; median of {plan.step_repetitions} after a warm-up, the "
        "shapes (and the two prompts) taking turns so that a slow spell of the machine "
        "spreads over all of them. Times are of the `llama_decode` call alone.",
        "- draft cost: the step with a one-token draft per sequence over the step without, "
        "1x2 / 1x1 and 8x2 / 8x1.",
        "",
        f"Build: llama-cpp-python {build.version} from `{build.location}`, llamafile "
        + (
            f"**on** (`{LLAMAFILE_MARK}` in `llama_print_system_info()`)"
            if build.llamafile
            else f"**off** (no `{LLAMAFILE_MARK}` in `llama_print_system_info()`)"
        )
        + f": `{build.system_info}`",
        "",
    ]
    rows = outcome.rows
    if rows:
        header = [
            "type",
            "file (MiB)",
            "exact as is",
            "exact padded",
            "Shard pads",
            "prompt tok/s",
            "prompt padded tok/s",
            *(f"{s}x{k} (ms)" for s, k in STEP_SHAPES),
            "draft cost 1 seq (1x2 / 1x1)",
            "draft cost 8 seqs (8x2 / 8x1)",
            "other CPU",
        ]
        lines += [
            f"| {' | '.join(header)} |",
            "|---|" + "---:|" + "---|" * 3 + "---:|" * (len(header) - 5),
        ]
        for row in rows:
            cells = [
                row.name,
                f"{row.file_mib:.0f}",
                "yes" if row.exact else "no",
                _yes_no(row.exact_padded),
                "yes" if row.padded else "no",
                f"{row.prompt_tokens_per_s:.0f}",
                f"{row.prompt_padded_tokens_per_s:.0f}",
                *(_step(row, shape) for shape in STEP_SHAPES),
                _times(row.draft_cost(1)),
                _times(row.draft_cost(N_SEQ)),
                _share(row.other_cpu),
            ]
            lines.append(f"| {' | '.join(cells)} |")
        lines.append("")
        lines += _weight_type_findings(rows, build.llamafile)
    for name, reason in outcome.skipped.items():
        lines += [f"Type {name} was not measured: {reason}.", ""]
    return lines


def _step(row: WeightTypeRow, shape: tuple[int, int]) -> str:
    value = row.step_ms.get(shape)
    return "n/a" if value is None else f"{value:.1f}"


def _weight_type_findings(rows: Sequence[WeightTypeRow], llamafile: bool) -> list[str]:
    """The mechanism, what the padding costs, and when a one-token draft pays."""
    not_exact = [row.name for row in rows if not row.exact]
    padded = [row for row in rows if row.padded]
    never = [row.name for row in rows if not row.exact_padded]
    if llamafile:
        mechanism = (
            "On this build (llamafile on) llamafile's sgemm computes matmuls of 2+ rows of "
            "F32, F16, BF16 and IQ4_NL weights and ggml's vec_dot those of a single row; the "
            "two accumulate in different orders, so a token decoded alone gets other logits "
            "than the same token verified in a draft."
        )
    else:
        mechanism = (
            "This build has no llamafile: ggml's own kernels compute one row and many alike "
            "here, so no type should need the padding (a build with llamafile takes its "
            "sgemm for 2+ rows of F32, F16, BF16 and IQ4_NL weights, which rounds otherwise)."
        )
    measured = (
        f" Measured: not exact as is: {_names(not_exact)}."
        if not_exact
        else " Measured: every type is exact as is."
    )
    lines = [mechanism + measured, ""]
    if never:
        lines += [
            f"**Not exact even padded: {_names(never)}**: Shard cannot keep drafts exact for "
            "them on this build (it serves them, warns, and keeps no prefix cache).",
            "",
        ]
    if padded:
        costs = "; ".join(
            f"{row.name} {_step(row, (1, 2))} ms instead of {_step(row, (1, 1))}, "
            f"{_times(row.draft_cost(1))}"
            for row in padded
        )
        prompts = "; ".join(
            f"{row.name} {row.prompt_padded_tokens_per_s:.0f} instead of "
            f"{row.prompt_tokens_per_s:.0f} tokens/s"
            for row in padded
        )
        lines += [
            f"Shard pads single rows for {_names([row.name for row in padded])}: a decode "
            "that would have one row with logits gets a second (a one-token draft of the next "
            "token, or a prompt's second-to-last token), so that every matmul takes the kernel "
            "for many rows. What that costs: a lone sequence without a draft pays the 1x2 step "
            f"instead of 1x1 ({costs}); a lone prompt's last chunk asks for two rows of logits "
            f"({prompts}). With 2+ sequences decoding together, or with a draft, a step has 2+ "
            "rows with logits already and nothing is added; and for a lone padded sequence a "
            "one-token draft is free, since its step pays for the second row anyway.",
            "",
        ]
    else:
        lines += ["No type needs the padding on this build, so it costs nothing here.", ""]
    lines += [
        "A one-token draft accepted with probability p makes 1 + p tokens for the draft cost, "
        "so it pays only when p is above the draft cost minus 1: never at 2.00x or more. "
        "Break-even acceptance per type (- where the draft cost is 2.00x or more; 0% for a "
        "lone sequence of a padded type, whose plain step is the 1x2 step already):",
        "",
    ]
    for sequences in (1, N_SEQ):
        parts = [f"{row.name} {_break_even(row, sequences)}" for row in rows]
        count = f"{sequences} sequence{'s' if sequences != 1 else ''}"
        lines.append(f"- {count}: {', '.join(parts)}")
    lines.append("")
    return lines


def _break_even(row: WeightTypeRow, sequences: int) -> str:
    """The acceptance above which a one-token draft pays, at `sequences` sequences."""
    if sequences == 1 and row.padded:
        return "0% (padded)"
    cost = row.draft_cost(sequences)
    if cost is None:
        return "n/a"
    return "-" if cost >= 2 else f"{max(0.0, cost - 1):.0%}"


def results_markdown(results: SuiteResults, plots: dict[str, Path]) -> str:
    """The measured sections alone (also printed at the end of a run). `plots` maps a
    section (comparison, grounded, failures) to its image, for those that have one."""
    lines: list[str] = []
    if results.comparison_plan is not None:
        lines += _comparison(results, plots.get("comparison"))
    if results.multi_turn is not None:
        lines += _multi_turn(results)
    if results.grounded is not None:
        lines += _grounded(results, plots.get("grounded"))
    if results.failures is not None:
        lines += _failures(results, plots.get("failures"))
    if results.structured is not None and results.structured_plan is not None:
        lines += structured_markdown(results.structured_plan, results.structured)
    if results.weight_types is not None:
        lines += _weight_types(results)
    if results.testbed is not None and results.testbed_plan is not None:
        lines += testbed_markdown(results.testbed_plan, results.testbed, results.testbed_runs)
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
