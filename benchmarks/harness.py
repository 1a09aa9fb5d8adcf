"""How every section measures: on a quiet CPU, with the disturbance recorded, re-measured when
other processes got in the way.

llama.cpp's threads spin while they wait for each other, so a busy neighbour can slow decoding
by 100x; a number taken while something else ran says nothing about the server.
"""

import asyncio
import dataclasses
import os
import shutil
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from benchmarks.cpu import OtherLoadMeter, wait_for_idle
from benchmarks.servers import LaunchSpec, ServerFailed, log_tail, running_server
from benchmarks.workload import LevelResult, Workload, measure


@dataclass(frozen=True)
class Harness:
    """Settings every section shares: where logs go, how long to wait, how quiet is quiet."""

    log_dir: Path
    startup_timeout_s: float
    scout_timeout_s: float
    scout_threads: int
    idle_wait_s: float
    max_other_cpu: float
    retries: int
    runs: int

    def oracle_threads_beside_scout(self, threads: int) -> int:
        """The oracle's share of `threads` cores when a scout takes its own threads."""
        return max(1, threads - self.scout_threads)


def core_pins(oracle_cores: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`taskset` prefixes that keep the oracle process on this process's first
    `oracle_cores` cores and a scout on the rest, as if each had a machine of its own; empty
    where taskset is missing or no core would be left for the scout."""
    cores = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") is None or len(cores) <= oracle_cores:
        return (), ()

    def pin(chosen: list[int]) -> tuple[str, ...]:
        return ("taskset", "-c", ",".join(str(core) for core in chosen))

    return pin(cores[:oracle_cores]), pin(cores[oracle_cores:])


@dataclass
class Journal:
    """What happened besides the numbers: commands, CPU before each start, what failed."""

    launch_commands: dict[str, str] = field(default_factory=dict)
    busy_before: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def before_start(self, label: str, harness: Harness) -> None:
        """Wait for a quiet CPU before a server starts and remember how busy it was."""
        busy = wait_for_idle(harness.idle_wait_s)
        if busy is not None:
            self.busy_before[label] = busy


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def measure_level(
    label: str,
    base_url: str,
    api_key: str,
    workload: Workload,
    our_pids: Sequence[int],
    harness: Harness,
    warmup: bool,
) -> LevelResult:
    """One concurrency level; measured again (up to `retries` times, after waiting for idle)
    while processes other than `our_pids` and this one took more than `max_other_cpu`."""
    result: LevelResult | None = None
    for attempt in range(1 + harness.retries):
        if attempt:
            print("  other processes shared the CPU: measuring again", flush=True)
            wait_for_idle(harness.idle_wait_s)
        meter = OtherLoadMeter(*our_pids)
        meter.start()
        result = asyncio.run(measure(label, base_url, api_key, workload, warmup and not attempt))
        result = dataclasses.replace(result, other_cpu=meter.stop())
        print(
            f"  {label}, {workload.sampling.name} @ {workload.clients} clients: "
            f"{result.tokens_per_s:.1f} tok/s "
            f"({result.completion_tokens} tokens in {result.elapsed_s:.1f} s, "
            f"p50 {result.latency_p50_s:.2f} s, TTFT p50 {result.ttft_p50_s:.2f} s, "
            f"other CPU {_share(result.other_cpu)})",
            flush=True,
        )
        if (result.other_cpu or 0.0) <= harness.max_other_cpu:
            break
    assert result is not None  # the loop runs at least once
    return result


T = TypeVar("T")


def measured_on_fresh_server(
    label: str,
    spec: LaunchSpec,
    log: Path,
    harness: Harness,
    journal: Journal,
    measure: Callable[[str], Coroutine[Any, Any, T]],
) -> tuple[T, float | None] | None:
    """Start the server, run `measure(base_url)` while metering other processes' CPU, stop
    it; the result and that CPU share, or None with the failure recorded in the journal."""
    try:
        with running_server(spec, log, harness.startup_timeout_s) as server:
            meter = OtherLoadMeter(server.pid)
            meter.start()
            result = asyncio.run(measure(server.base_url))
            return result, meter.stop()
    except (ServerFailed, RuntimeError, OSError, httpx.HTTPError) as error:
        journal.failures[label] = str(error).splitlines()[0]
        print(f"{label} failed: {error}\n{log_tail(log)}", file=sys.stderr, flush=True)
        return None
