"""Section 1: Shard against llama.cpp's two common servers at several concurrencies.

Servers run one at a time (they would fight for the same cores), each on a free port, and are
always stopped afterwards. Each server runs every level once per run, so a slow spell of the
machine spreads over levels instead of spoiling one. See benchmarks/README.md.
"""

import sys
from dataclasses import dataclass

import httpx

from benchmarks.harness import Harness, Journal, measure_level
from benchmarks.servers import (
    ServerConfig,
    ServerFailed,
    free_port,
    launch_spec,
    log_tail,
    running_server,
)
from benchmarks.workload import LevelResult, Workload


@dataclass(frozen=True)
class ComparisonPlan:
    """Which servers, at which concurrencies, doing what."""

    servers: tuple[str, ...]
    clients: tuple[int, ...]
    requests_per_client: int
    duration_s: float | None
    max_tokens: int


def benchmark_server(
    name: str, config: ServerConfig, plan: ComparisonPlan, harness: Harness, journal: Journal
) -> list[LevelResult]:
    """Start one server, measure every level `harness.runs` times, stop it."""
    journal.before_start(name, harness)
    port = free_port()
    spec = launch_spec(name, config, port)
    journal.launch_commands[name] = spec.display(port)
    log = harness.log_dir / f"{name}.log"
    results: list[LevelResult] = []
    try:
        with running_server(spec, log, harness.startup_timeout_s) as server:
            for run in range(harness.runs):
                print(f"{name}: run {run + 1} of {harness.runs}", flush=True)
                for index, clients in enumerate(plan.clients):
                    workload = Workload(
                        clients, plan.requests_per_client, plan.duration_s, plan.max_tokens
                    )
                    warmup = run == 0 and index == 0
                    results.append(
                        measure_level(
                            name,
                            server.base_url,
                            config.api_key,
                            workload,
                            [server.pid],
                            harness,
                            warmup,
                        )
                    )
    except (ServerFailed, RuntimeError, OSError, httpx.HTTPError) as error:
        journal.failures[name] = str(error).splitlines()[0]
        print(f"{name} failed: {error}\n{log_tail(log)}", file=sys.stderr, flush=True)
    return results


def run_comparison(
    plan: ComparisonPlan, config: ServerConfig, harness: Harness, journal: Journal
) -> list[LevelResult]:
    """Every requested server in turn; a server that fails is recorded and skipped."""
    results: list[LevelResult] = []
    for name in plan.servers:
        results += benchmark_server(name, config, plan, harness, journal)
    return results
