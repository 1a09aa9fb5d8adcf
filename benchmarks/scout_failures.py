"""Section 3: what misbehaving scouts cost. The oracle must never wait on a scout past a short
deadline (docs/architecture.md, invariant 4), so a dead or slow scout should cost nothing
measurable and a hostile one only the verification of its rejected drafts.

One oracle with n-gram drafts off (so every draft is a scout's) serves N concurrent clients:
with no scout, then beside each kind of bad scout in turn, round after round (a run of each
per round), so that the machine's drift over the section falls on every scenario alike: the
no-scout runs alone spread by 9% when they all came first. The oracle process is pinned
to the cores the scouts do not use (one of two here) and each scout to the rest, in every
scenario alike, the baseline too: a drafting scout shares this machine, where a real one has
its own, and unpinned, a scout drafting all the time takes the core the oracle's event loop
would otherwise have, which is a cost of sharing the machine, not of the scout.

- `dead`: benchmarks.dead_scout joins and never answers;
- `slow`: `shard scout --added-latency-ms 200`;
- `hostile`: `shard scout --hostile random`, drafts of random token ids.
"""

import asyncio
import contextlib
import dataclasses
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from benchmarks.harness import Harness, Journal, core_pins, measure_level
from benchmarks.oracle_metrics import DraftCounts, draft_counts, scouts_connected
from benchmarks.scouts import (
    RunningScout,
    ScoutFailed,
    display,
    kind_missing,
    running_scout,
    scout_command,
)
from benchmarks.servers import (
    RunningServer,
    ServerConfig,
    ServerFailed,
    free_port,
    launch_spec,
    log_tail,
    running_server,
    server_url,
)
from benchmarks.workload import LevelResult, TimeLimitExceeded, Workload

NO_SCOUT = "none"
FAILURE_SCENARIOS: tuple[str, ...] = (NO_SCOUT, "dead", "slow", "hostile")
ORACLE_FLAGS: tuple[str, ...] = ("--no-ngram-drafts",)
SCOUT_COST_BUDGET = 0.05  # a dead, slow or hostile scout may cost at most this share


@dataclass(frozen=True)
class FailurePlan:
    """Which scenarios, and the load each is measured under."""

    scenarios: tuple[str, ...]
    clients: int
    requests_per_client: int
    max_tokens: int
    time_limit_s: float  # a run not done by then ends the scenario: it is far too slow

    @property
    def planned_tokens(self) -> int:
        """Tokens one run asks for: a run cut off at the limit was slower than this over it."""
        return self.clients * self.requests_per_client * self.max_tokens


@dataclass(frozen=True)
class FailureRun:
    """One scenario measured once."""

    scenario: str
    level: LevelResult | None  # None: cut off at the plan's time limit
    drafts: DraftCounts  # the oracle's draft counters over the measurement
    scout_connected_after: bool | None  # None when there was no scout


@dataclass
class FailureOutcome:
    """What was measured, and what could not be and why."""

    runs: list[FailureRun] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    oracle_threads: int = 0
    pins: tuple[str, str] = ("", "")
    """The oracle's and the scouts' `taskset -c` core lists; empty when not pinned."""


@dataclass(frozen=True)
class FailureRow:
    """One scenario over all runs, against the no-scout baseline. A scenario with a run cut
    off at the time limit has no measured rate, only an upper bound."""

    scenario: str
    runs: int
    tokens_per_s: float | None  # median; None if a run was cut off
    below: float | None  # when cut off: the rate it stayed under
    ratio: float | None  # over the no-scout median (or the bound's ratio when cut off)
    latency_p50_s: float | None
    ttft_p50_s: float | None
    other_cpu: float | None  # the most any finished run saw
    drafts: DraftCounts  # summed over runs
    connected_throughout: bool | None  # the scout was still there after every run


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize_failures(outcome: FailureOutcome, plan: FailurePlan) -> list[FailureRow]:
    """Medians per scenario, each compared with the no-scout median."""
    groups: dict[str, list[FailureRun]] = {}
    for run in outcome.runs:
        groups.setdefault(run.scenario, []).append(run)
    rows = []
    base_rate: float | None = None
    for scenario, runs in groups.items():
        levels = [run.level for run in runs if run.level is not None]
        cut_off = len(levels) < len(runs)
        rate = None if cut_off else _median([level.tokens_per_s for level in levels])
        below = plan.planned_tokens / plan.time_limit_s if cut_off else None
        if scenario == NO_SCOUT:
            base_rate = rate
        drafts = DraftCounts()
        for run in runs:
            drafts = drafts + run.drafts
        after = [r.scout_connected_after for r in runs if r.scout_connected_after is not None]
        rows.append(
            FailureRow(
                scenario=scenario,
                runs=len(runs),
                tokens_per_s=rate,
                below=below,
                ratio=None,
                latency_p50_s=_median([level.latency_p50_s for level in levels]),
                ttft_p50_s=_median([level.ttft_p50_s for level in levels]),
                other_cpu=max(
                    (level.other_cpu for level in levels if level.other_cpu is not None),
                    default=None,
                ),
                drafts=drafts,
                connected_throughout=all(after) if after else None,
            )
        )
    if not base_rate:
        return rows
    return [
        dataclasses.replace(row, ratio=(row.tokens_per_s or row.below or 0.0) / base_rate)
        for row in rows
    ]


@contextlib.contextmanager
def _scout_for(
    scenario: str, server: RunningServer, api_key: str, harness: Harness, pin: tuple[str, ...]
) -> Iterator[RunningScout | None]:
    """The scenario's scout, running beside the oracle; nothing for the baseline."""
    if scenario == NO_SCOUT:
        yield None
        return
    log = harness.log_dir / f"scout-{scenario}.log"
    with running_scout(
        scenario,
        server.base_url,
        api_key,
        log,
        harness.scout_timeout_s,
        harness.scout_threads,
        prefix=pin,
    ) as scout:
        yield scout


def _measure_scenario(
    scenario: str,
    server: RunningServer,
    plan: FailurePlan,
    config: ServerConfig,
    harness: Harness,
    first: bool,
    pin: tuple[str, ...],
) -> FailureRun:
    """One round's run of a scenario, with its scout (if any) started for it and stopped
    after; its level is None when the time limit cut it off."""
    workload = Workload(
        plan.clients, plan.requests_per_client, None, plan.max_tokens, plan.time_limit_s
    )
    with _scout_for(scenario, server, config.api_key, harness, pin) as scout:
        pids = [server.pid] + ([scout.pid] if scout else [])
        before = asyncio.run(draft_counts(server.base_url, config.api_key))
        level: LevelResult | None = None
        try:
            level = measure_level(
                f"scout {scenario}",
                server.base_url,
                config.api_key,
                workload,
                pids,
                harness,
                warmup=first,
            )
        except TimeLimitExceeded as error:
            print(f"  scout {scenario}: {error}; no more runs of it", flush=True)
        after = asyncio.run(draft_counts(server.base_url, config.api_key))
        connected = None
        if scout is not None:
            count = asyncio.run(scouts_connected(server.base_url, config.api_key))
            connected = scout.alive() and count > 0
    return FailureRun(scenario, level, after.since(before), connected)


def run_scout_failures(
    plan: FailurePlan,
    config: ServerConfig,
    harness: Harness,
    journal: Journal,
    shard_scout: str | None,
) -> FailureOutcome:
    """The baseline and each bad scout against one oracle; scenarios that cannot run here are
    skipped with the reason (all of them when `shard scout` is missing)."""
    outcome = FailureOutcome()
    if shard_scout is not None:
        outcome.skipped = {scenario: shard_scout for scenario in plan.scenarios}
        print(f"skipping the scout failure workloads: {shard_scout}", flush=True)
        return outcome
    runnable = []
    for scenario in plan.scenarios:
        missing = None if scenario == NO_SCOUT else kind_missing(scenario, shard_scout)
        if missing is None:
            runnable.append(scenario)
        else:
            outcome.skipped[scenario] = missing
    label = "shard, n-gram drafts off (scout failures)"
    journal.before_start(label, harness)
    port = free_port()
    outcome.oracle_threads = harness.oracle_threads_beside_scout(config.threads)
    oracle = dataclasses.replace(config, threads=outcome.oracle_threads, shard_args=ORACLE_FLAGS)
    oracle_pin, scout_pin = core_pins(outcome.oracle_threads)
    outcome.pins = (" ".join(oracle_pin[2:]), " ".join(scout_pin[2:]))
    spec = launch_spec("shard", oracle, port)
    spec = dataclasses.replace(spec, command=[*oracle_pin, *spec.command])
    journal.launch_commands[label] = spec.display(port)
    for scenario in runnable:
        if scenario != NO_SCOUT:
            command = scout_command(
                scenario, server_url(port), config.api_key, harness.scout_threads, prefix=scout_pin
            )
            journal.launch_commands[f"{scenario} scout"] = display(command)
    log = harness.log_dir / "shard-scout-failures.log"
    try:
        with running_server(spec, log, harness.startup_timeout_s) as server:
            for _ in range(harness.runs):
                for scenario in [s for s in runnable if s not in outcome.skipped]:
                    if any(r.scenario == scenario and r.level is None for r in outcome.runs):
                        continue  # cut off by the time limit: no more runs of it
                    first = not outcome.runs
                    try:
                        outcome.runs.append(
                            _measure_scenario(
                                scenario, server, plan, config, harness, first, scout_pin
                            )
                        )
                    except ScoutFailed as error:
                        outcome.skipped[scenario] = str(error).splitlines()[0]
                        print(f"{scenario} scout failed: {error}", file=sys.stderr, flush=True)
    except (ServerFailed, RuntimeError, OSError, httpx.HTTPError) as error:
        journal.failures[label] = str(error).splitlines()[0]
        print(f"{label} failed: {error}\n{log_tail(log)}", file=sys.stderr, flush=True)
    return outcome
