"""Turn measured results into a console table, a Markdown report and a plot.

The report carries everything needed to judge and repeat a run: machine, model, versions and
the exact command. It shows only what was measured; a server that failed is named as such.
"""

import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks.workload import LevelResult


@dataclass
class RunInfo:
    """Context of one benchmark run, gathered before measuring."""

    command: str
    model: Path
    servers: list[str]
    clients: list[int]
    requests_per_client: int
    duration_s: float | None
    max_tokens: int
    threads: int
    parallel: int
    ctx_per_sequence: int
    max_other_cpu: float
    retries: int
    launch_commands: dict[str, str] = field(default_factory=dict)
    llama_server_version: str | None = None
    failures: dict[str, str] = field(default_factory=dict)
    busy_before: dict[str, float] = field(default_factory=dict)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M"))


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


def _by_level(results: list[LevelResult]) -> dict[int, dict[str, LevelResult]]:
    table: dict[int, dict[str, LevelResult]] = {}
    for result in results:
        table.setdefault(result.clients, {})[result.server] = result
    return table


def _ratios(row: dict[str, LevelResult]) -> str:
    """Shard's throughput over each peer's, for the peers measured alongside it."""
    if "shard" not in row:
        return ""
    parts = [
        f"Shard / {peer}: {row['shard'].tokens_per_s / row[peer].tokens_per_s:.2f}x"
        for peer in ("llama-server", "llama-cpp-python")
        if peer in row
    ]
    return " · ".join(parts)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def console_table(results: list[LevelResult]) -> str:
    """Fixed-width summary printed at the end of a run."""
    header = (
        f"{'clients':>7}  {'server':<17} {'tok/s':>8} {'p50 s':>7} {'p95 s':>7} "
        f"{'reqs':>5} {'tokens':>7} {'other CPU':>9}"
    )
    lines = [header, "-" * len(header)]
    for result in sorted(results, key=lambda r: (r.clients, r.server)):
        lines.append(
            f"{result.clients:>7}  {result.server:<17} {result.tokens_per_s:>8.1f} "
            f"{result.latency_p50_s:>7.2f} {result.latency_p95_s:>7.2f} "
            f"{result.requests:>5} {result.completion_tokens:>7} {_share(result.other_cpu):>9}"
        )
    return "\n".join(lines)


def save_plot(results: list[LevelResult], path: Path) -> bool:
    """Tokens/s against clients, one line per server; skipped if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return False
    figure, axes = plt.subplots(figsize=(6, 4))
    for server in sorted({result.server for result in results}):
        points = sorted((r.clients, r.tokens_per_s) for r in results if r.server == server)
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=server)
    axes.set_xlabel("concurrent clients")
    axes.set_ylabel("completion tokens/s (aggregate)")
    axes.set_xticks(sorted({result.clients for result in results}))
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def markdown(info: RunInfo, results: list[LevelResult], plot: Path | None) -> str:
    """The full report as Markdown."""
    size_mib = info.model.stat().st_size / 2**20
    workload = (
        f"{info.duration_s:g} s per concurrency level"
        if info.duration_s
        else f"{info.requests_per_client} requests per client"
    )
    lines = [
        "# Throughput benchmark",
        "",
        f"Measured {info.started_at} UTC. Reproduce from the repository root with:",
        "",
        "```sh",
        info.command,
        "```",
        "",
        "## Setup",
        "",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}",
        f"- Model: `{info.model.name}` ({size_mib:.1f} MiB)",
        f"- Python {platform.python_version()}, llama-cpp-python "
        f"{package_version('llama_cpp_python')}, shard {package_version('shard')}"
        + (f", llama-server {info.llama_server_version}" if info.llama_server_version else ""),
        f"- Workload: non-streaming `POST /v1/chat/completions`, temperature 0, max_tokens "
        f"{info.max_tokens}, {workload}, a distinct prompt per request; one warm-up request "
        "per server before measuring. Tokens are the servers' own `usage.completion_tokens`.",
        f"- Every server: {info.threads} threads, {info.ctx_per_sequence} tokens of context "
        f"per sequence; Shard and llama-server decode up to {info.parallel} sequences "
        "together, llama-cpp-python's server handles one request at a time.",
        "- llama-server is built from the llama.cpp sources vendored in the same "
        "llama-cpp-python release, so all three run the same kernels. It keeps each slot's "
        "last prompt in cache; the prompts here differ, so only the chat template's first "
        "few tokens can be reused.",
        "",
        "Server commands (`PORT` is a free port picked per run):",
        "",
    ]
    for name, command in info.launch_commands.items():
        lines.append(f"- {name}: `{command}`")
    for name, reason in info.failures.items():
        lines.append(f"- **{name} was not measured**: {reason}")
    if info.busy_before:
        shown = ", ".join(f"{name} {busy:.0%}" for name, busy in info.busy_before.items())
        lines += [
            "",
            f"CPU busy just before each server started: {shown}. The `other CPU` column is "
            "the share of all cores that processes other than the server and the benchmark "
            "used while measuring; a level disturbed by more than "
            f"{info.max_other_cpu:.0%} was measured again (up to {info.retries} times) and the "
            "last attempt is shown.",
        ]
    lines += ["", "## Results", ""]
    if plot is not None:
        lines += [f"![completion tokens/s vs concurrent clients]({plot.name})", ""]
    for clients, row in sorted(_by_level(results).items()):
        lines += [
            f"### {clients} concurrent client{'s' if clients != 1 else ''}",
            "",
            "| server | tokens/s | latency p50 (s) | latency p95 (s) | requests | tokens "
            "| other CPU |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for server in info.servers:
            if server in row:
                r = row[server]
                lines.append(
                    f"| {server} | {r.tokens_per_s:.1f} | {r.latency_p50_s:.2f} | "
                    f"{r.latency_p95_s:.2f} | {r.requests} | {r.completion_tokens} "
                    f"| {_share(r.other_cpu)} |"
                )
        lines.append("")
        if ratios := _ratios(row):
            lines += [ratios, ""]
    return "\n".join(lines)


def write_report(info: RunInfo, results: list[LevelResult], output: Path) -> None:
    """Write the Markdown report and, beside it, the plot it links to."""
    output.parent.mkdir(parents=True, exist_ok=True)
    plot_path = output.with_suffix(".png")
    plot = plot_path if results and save_plot(results, plot_path) else None
    output.write_text(markdown(info, results, plot))
    print(f"wrote {output}" + (f" and {plot_path}" if plot else ""), flush=True)
