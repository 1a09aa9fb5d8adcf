"""PNG plots beside the report, one per section; skipped (with a note) without matplotlib."""

import itertools
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.grounded import GroundedRow
from benchmarks.sampling import GREEDY, SAMPLED
from benchmarks.scout_failures import FailureRow
from benchmarks.workload import LevelSummary

PLOTTED: dict[str, str] = {GREEDY.name: "-", SAMPLED.name: "--"}  # sampling -> line style


def _pyplot() -> Any | None:
    """matplotlib's pyplot on the file-only backend, or None if it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return None
    return plt


def comparison_plot(summaries: Sequence[LevelSummary], path: Path) -> bool:
    """Tokens/s and TTFT p50 against clients, one line per server: solid greedy, dashed at
    temperature 0.7 in the server's colour."""
    plt = _pyplot()
    shown = [s for s in summaries if s.sampling in PLOTTED]
    if plt is None or not shown:
        return False
    figure, (rate_axes, ttft_axes) = plt.subplots(1, 2, figsize=(11, 4))
    servers = list(dict.fromkeys(s.server for s in shown))
    for (sampling, style), server in itertools.product(PLOTTED.items(), servers):
        points = sorted(
            (s.clients, s.tokens_per_s, s.ttft_p50_s)
            for s in shown
            if s.server == server and s.sampling == sampling
        )
        if not points:
            continue
        clients = [p[0] for p in points]
        line = {
            "marker": "o",
            "linestyle": style,
            "color": f"C{servers.index(server)}",
            "label": server if sampling == GREEDY.name else f"{server}, {SAMPLED.title}",
        }
        rate_axes.plot(clients, [p[1] for p in points], **line)
        ttft_axes.plot(clients, [p[2] for p in points], **line)
    levels = sorted({s.clients for s in shown})
    for axes, label in (
        (rate_axes, "completion tokens/s (aggregate)"),
        (ttft_axes, "time to first token p50 (s)"),
    ):
        axes.set_xlabel("concurrent clients")
        axes.set_ylabel(label)
        axes.set_xticks(levels)
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def _bars(
    groups: Sequence[str], series: Mapping[str, Sequence[float]], ylabel: str, path: Path
) -> bool:
    """Grouped bars: one group per entry of `groups`, one bar per series."""
    plt = _pyplot()
    if plt is None or not groups or not series:
        return False
    figure, axes = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(series)
    for index, (name, values) in enumerate(series.items()):
        offsets = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        axes.bar(offsets, values, width, label=name)
    axes.set_xticks(range(len(groups)), groups)
    axes.set_ylabel(ylabel)
    axes.grid(True, axis="y", alpha=0.3)
    if len(series) > 1:
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def grounded_plot(rows: Sequence[GroundedRow], path: Path) -> bool:
    """Tokens/s per task, one bar per drafts mode."""
    tasks = list(dict.fromkeys(row.task for row in rows))
    modes = list(dict.fromkeys(row.mode for row in rows))
    rate = {(row.mode, row.task): row.tokens_per_s for row in rows}
    series = {mode: [rate.get((mode, task), 0.0) for task in tasks] for mode in modes}
    return _bars(tasks, series, "completion tokens/s (1 client)", path)


def failure_plot(rows: Sequence[FailureRow], path: Path) -> bool:
    """Aggregate tokens/s beside each kind of scout (a cut-off scenario at its upper bound)."""
    return _bars(
        [row.scenario if row.below is None else f"{row.scenario} (<)" for row in rows],
        {"tokens/s": [row.tokens_per_s or row.below or 0.0 for row in rows]},
        "completion tokens/s (aggregate)",
        path,
    )
