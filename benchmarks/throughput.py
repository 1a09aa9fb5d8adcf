"""Section 1: Shard against llama.cpp's common servers at several concurrencies and with
several sampling presets (benchmarks/sampling.py says which server runs which).

Servers run one at a time (they would fight for the same cores), each on a free port, and are
always stopped afterwards. Each server runs every (preset, level) once per run, so a slow spell
of the machine spreads over levels instead of spoiling one. See benchmarks/README.md.
"""

import sys
from dataclasses import dataclass

import httpx

from benchmarks.harness import Harness, Journal, measure_level
from benchmarks.sampling import GREEDY, SAMPLINGS, Sampling
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
    samplings: tuple[str, ...] = (GREEDY.name,)  # names from benchmarks.sampling.SAMPLINGS
    processed_clients: tuple[int, ...] = (1, 8)  # the levels of the processed presets

    def sampling_levels(self, sampling: Sampling) -> tuple[int, ...]:
        """The concurrencies a preset runs at."""
        return self.processed_clients if sampling.processed else self.clients

    def levels(self, server: str) -> list[tuple[Sampling, int]]:
        """What one server runs in each run, in order: every chosen preset it takes part
        in, at that preset's levels."""
        return [
            (sampling, clients)
            for sampling in (SAMPLINGS[name] for name in self.samplings)
            if server in sampling.servers
            for clients in self.sampling_levels(sampling)
        ]


def benchmark_server(
    name: str, config: ServerConfig, plan: ComparisonPlan, harness: Harness, journal: Journal
) -> list[LevelResult]:
    """Start one server, measure every (preset, level) `harness.runs` times, stop it."""
    levels = plan.levels(name)
    if not levels:
        return []
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
                for index, (sampling, clients) in enumerate(levels):
                    workload = Workload(
                        clients,
                        plan.requests_per_client,
                        plan.duration_s,
                        plan.max_tokens,
                        sampling=sampling,
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
