"""Section: the fair scout testbed. Can a scout on hardware of its own make the oracle faster?

On this 2-core machine the oracle serves the F32 build of the embedded model (made from it
with llama.cpp's quantize) pinned to core 0 with one thread and no n-gram drafts, so every
draft is the scout's; one `shard scout --threads 1` drafts with the embedded Q4_K_M model,
pinned to core 1. Each workload runs with the oracle alone, then beside the scout with 0 and
20 ms added to each draft (`--added-latency-ms`), at 1 and 4 clients, greedy and seeded at
temperature 0.7. Output must be identical to the oracle alone's.

Before the servers start, the section measures what the swarm model (benchmarks/swarm_model.py)
needs, on the same cores: the oracle's step cost by sequences and rows, and the scout's
standalone decode rate. Each workload's efficiency is its rate over a ceiling, the scout's
rate times its acceptance, or the rate verification allows if lower; the model predicts
each rate from the measured costs and acceptance.
"""

import asyncio
import contextlib
import dataclasses
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.chat_client import connect
from benchmarks.deployment import deployment_markdown
from benchmarks.harness import Harness, Journal
from benchmarks.oracle_metrics import DraftCounts, draft_counts
from benchmarks.sampling import SAMPLINGS, seed_for
from benchmarks.scouts import ScoutFailed, display, running_scout
from benchmarks.servers import (
    ServerConfig,
    ServerFailed,
    free_port,
    launch_spec,
    log_tail,
    running_server,
)
from benchmarks.swarm_model import SwarmCase, simulate
from benchmarks.weight_types import weight_type_file
from benchmarks.workload import prompt_for

ORACLE_TYPE = "F32"
ORACLE_CORE, SCOUT_CORE = 0, 1
ORACLE_FLAGS: tuple[str, ...] = ("--no-ngram-drafts",)
DRAFT_MAX = 16  # the oracle's default --draft-max: what a scout drafts ahead and is asked for
STEP_ROWS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 12, 17)
STEP_SEQUENCES: tuple[int, ...] = (1, 4)
SCOUT_TOKENS = 48  # tokens the scout's standalone rate is measured over
SINGLE_STREAM_TARGET = 1.8  # at 20 ms, single stream, greedy: at least this over alone
MODEL_TOLERANCE = 0.15  # the swarm model should agree with the testbed within this


@dataclass(frozen=True)
class FairTestbedPlan:
    """Which workloads: added latencies (ms), concurrencies and sampling presets."""

    latencies_ms: tuple[int, ...] = (0, 20)
    clients: tuple[int, ...] = (1, 4)
    samplings: tuple[str, ...] = ("greedy", "sampled")
    requests_per_client: int = 4
    """Back to back per client, so a workload of several clients is steady load, not one burst
    (one request each made the 4-client rows swing by 6% from run to run)."""
    max_tokens: int = 128


@dataclass(frozen=True)
class Costs:
    """What the model is fed: oracle step seconds by (sequences, rows per sequence), whether
    a lone sequence is padded to two rows, and the scout's standalone tokens per second."""

    step_s: dict[tuple[int, int], float]
    padded: bool
    scout_tok_s: float

    def step(self, sequences: int, rows: int) -> float:
        """Measured where it was; else the nearest measured sequence count, linear in rows
        between (and past) the measured row counts."""
        near = min(STEP_SEQUENCES, key=lambda s: abs(s - sequences))
        measured = sorted(r for s, r in self.step_s if s == near)
        high = next((r for r in measured if r >= rows), measured[-1])
        low = measured[max(0, measured.index(high) - 1)]
        a, b = self.step_s[(near, low)], self.step_s[(near, high)]
        seconds = a if low == high else a + (b - a) * (rows - low) / (high - low)
        return seconds * sequences / near


@dataclass(frozen=True)
class FairTestbedRun:
    """One workload measured once: `latency_ms` None is the oracle alone."""

    latency_ms: int | None
    clients: int
    sampling: str
    completion_tokens: int
    elapsed_s: float
    texts: tuple[str, ...]
    drafts: DraftCounts

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.elapsed_s


@dataclass
class FairTestbedOutcome:
    costs: Costs | None = None
    runs: list[FairTestbedRun] = field(default_factory=list)
    skipped: str | None = None


@dataclass(frozen=True)
class FairTestbedRow:
    """A workload with the scout against the oracle alone, with the model's prediction."""

    latency_ms: int
    clients: int
    sampling: str
    alone_tok_s: float
    scout_tok_s: float
    acceptance: float | None
    identical: bool
    ceiling_tok_s: float | None
    predicted_tok_s: float | None

    @property
    def speedup(self) -> float:
        return self.scout_tok_s / self.alone_tok_s

    @property
    def efficiency(self) -> float | None:
        return self.scout_tok_s / self.ceiling_tok_s if self.ceiling_tok_s else None

    @property
    def model_error(self) -> float | None:
        if self.predicted_tok_s is None:
            return None
        return self.predicted_tok_s / self.scout_tok_s - 1


def testbed_missing() -> str | None:
    """Why the testbed cannot run here, or None."""
    if shutil.which("taskset") is None:
        return "`taskset` (util-linux) is not installed"
    cores = os.sched_getaffinity(0)
    if not {ORACLE_CORE, SCOUT_CORE} <= cores:
        return f"needs cores {ORACLE_CORE} and {SCOUT_CORE}; this process may use {sorted(cores)}"
    return None


@contextlib.contextmanager
def _pinned(core: int) -> Iterator[None]:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def measure_costs(oracle_model: Path, scout_model: Path) -> Costs:
    """The oracle's step costs on its core and the scout's decode rate on its own, in this
    process, with one llama.cpp thread each, as the servers will run."""
    from shard.engine.llama_model import ContextShape, LlamaModel
    from shard.engine.spec.exactness import drafts_are_exact

    steps: dict[tuple[int, int], float] = {}
    with _pinned(ORACLE_CORE):
        model = LlamaModel(oracle_model, ContextShape(512, max(STEP_SEQUENCES), 512, 1))
        batch = model.new_batch(512)
        try:
            padded = not drafts_are_exact(model, batch)
            tokens = model.tokenize("The river ran down to the sea past the old mill. " * 8)
            for seq_id in range(max(STEP_SEQUENCES)):
                batch.clear()
                for position in range(32):
                    batch.add(tokens[position], position, seq_id, False)
                model.decode(batch)
            for sequences in STEP_SEQUENCES:
                for rows in STEP_ROWS:
                    samples = []
                    for _ in range(3):
                        batch.clear()
                        for seq_id in range(sequences):
                            model.forget(seq_id, 32)
                            for row in range(rows):
                                batch.add(tokens[32 + row], 32 + row, seq_id, True)
                        started = time.perf_counter()
                        model.decode(batch)
                        samples.append(time.perf_counter() - started)
                    steps[(sequences, rows)] = statistics.median(samples)
        finally:
            batch.free()
            model.close()
    with _pinned(SCOUT_CORE):
        model = LlamaModel(scout_model, ContextShape(512, 1, 512, 1))
        batch = model.new_batch(512)
        try:
            prompt = model.tokenize("Tell me a story about a lighthouse keeper.")
            for position, token in enumerate(prompt):
                batch.add(token, position, 0, position == len(prompt) - 1)
            model.decode(batch)
            started = time.perf_counter()
            for position in range(len(prompt), len(prompt) + SCOUT_TOKENS):
                token = int(model.logits(len(batch) - 1).argmax())
                batch.clear()
                batch.add(token, position, 0, True)
                model.decode(batch)
            scout_tok_s = SCOUT_TOKENS / (time.perf_counter() - started)
        finally:
            batch.free()
            model.close()
    return Costs(steps, padded, scout_tok_s)


async def _workload(
    base_url: str, api_key: str, clients: int, sampling: str, plan: FairTestbedPlan
) -> tuple[int, float, tuple[str, ...]]:
    """Every client's requests back to back; (completion tokens, seconds, texts in order)."""
    preset = SAMPLINGS[sampling]
    per_client = plan.requests_per_client
    api = await connect(base_url, api_key)
    try:

        async def client_loop(client: int) -> list[tuple[int, str]]:
            done = []
            for request in range(per_client):
                body = preset.body(seed_for(client, request))
                result = await api.complete(prompt_for(client, request), plan.max_tokens, body)
                done.append((result.completion_tokens, result.text))
            return done

        started = time.perf_counter()
        per = await asyncio.gather(*(client_loop(client) for client in range(clients)))
        elapsed = time.perf_counter() - started
    finally:
        await api.aclose()
    flat = [item for client in per for item in client]
    return sum(t for t, _ in flat), elapsed, tuple(text for _, text in flat)


def _measure_all(
    base_url: str, api_key: str, plan: FairTestbedPlan, latency: int | None, harness: Harness
) -> list[FairTestbedRun]:
    runs = []
    for run in range(harness.runs):
        for sampling in plan.samplings:
            for clients in plan.clients:
                before = asyncio.run(draft_counts(base_url, api_key))
                tokens, elapsed, texts = asyncio.run(
                    _workload(base_url, api_key, clients, sampling, plan)
                )
                after = asyncio.run(draft_counts(base_url, api_key))
                result = FairTestbedRun(
                    latency, clients, sampling, tokens, elapsed, texts, after.since(before)
                )
                label = "alone" if latency is None else f"scout +{latency} ms"
                print(
                    f"  testbed run {run + 1}, {label}, {sampling} @ {clients} clients: "
                    f"{result.tokens_per_s:.1f} tok/s",
                    flush=True,
                )
                runs.append(result)
    return runs


def run_testbed(
    plan: FairTestbedPlan, config: ServerConfig, harness: Harness, journal: Journal, cache_dir: Path
) -> FairTestbedOutcome:
    """Measure costs, then the oracle alone and beside the scout at each added latency."""
    outcome = FairTestbedOutcome()
    missing = testbed_missing()
    if missing is not None:
        outcome.skipped = missing
        print(f"skipping the testbed: {missing}", flush=True)
        return outcome
    oracle_model = weight_type_file(ORACLE_TYPE, config.model, cache_dir / "weight-types")
    journal.before_start("testbed costs", harness)
    outcome.costs = measure_costs(oracle_model, config.model)
    costs = outcome.costs
    print(
        f"  testbed costs: oracle 1x1 {costs.step_s[(1, 1)] * 1000:.1f} ms, 1x2 "
        f"{costs.step_s[(1, 2)] * 1000:.1f} ms, padded {costs.padded}; scout "
        f"{costs.scout_tok_s:.1f} tok/s",
        flush=True,
    )
    oracle = dataclasses.replace(
        config, model=oracle_model, threads=1, shard_args=ORACLE_FLAGS, parallel=max(plan.clients)
    )
    port = free_port()
    spec = launch_spec("shard", oracle, port)
    spec = dataclasses.replace(spec, command=["taskset", "-c", str(ORACLE_CORE), *spec.command])
    label = f"shard, {ORACLE_TYPE} oracle on core {ORACLE_CORE} (testbed)"
    journal.launch_commands[label] = spec.display(port)
    log = harness.log_dir / "shard-testbed.log"
    journal.before_start(label, harness)
    try:
        with running_server(spec, log, harness.startup_timeout_s) as server:
            outcome.runs += _measure_all(server.base_url, config.api_key, plan, None, harness)
            for latency in plan.latencies_ms:
                extra = ("--added-latency-ms", str(latency)) if latency else ()
                prefix = ("taskset", "-c", str(SCOUT_CORE))
                scout_log = harness.log_dir / f"scout-testbed-{latency}.log"
                with running_scout(
                    "scout",
                    server.base_url,
                    config.api_key,
                    scout_log,
                    harness.scout_timeout_s,
                    1,
                    extra=extra,
                    prefix=prefix,
                ) as scout:
                    shown = display(scout.command)
                    journal.launch_commands[f"testbed scout, +{latency} ms"] = shown
                    outcome.runs += _measure_all(
                        server.base_url, config.api_key, plan, latency, harness
                    )
    except (ServerFailed, ScoutFailed, RuntimeError, OSError) as error:
        journal.failures[label] = str(error).splitlines()[0]
        print(f"{label} failed: {error}\n{log_tail(log)}", file=sys.stderr, flush=True)
    return outcome


def verification_bound(costs: Costs, clients: int, acceptance: float) -> float:
    """The most tokens/s verification allows at this acceptance: the best draft length k
    with every draft there in time (expected tokens per step over its cost)."""
    best = 0.0
    for k in range(1, DRAFT_MAX + 1):
        expected = k + 1 if acceptance >= 1 else (1 - acceptance ** (k + 1)) / (1 - acceptance)
        best = max(best, clients * expected / costs.step(clients, k + 1))
    return best


def summarize_testbed(outcome: FairTestbedOutcome) -> list[FairTestbedRow]:
    """Medians per workload against the oracle alone's, with ceilings and predictions."""
    groups: dict[tuple[int | None, int, str], list[FairTestbedRun]] = {}
    for run in outcome.runs:
        groups.setdefault((run.latency_ms, run.clients, run.sampling), []).append(run)
    rows = []
    for (latency, clients, sampling), runs in groups.items():
        alone = groups.get((None, clients, sampling))
        if latency is None or not alone:
            continue
        drafts = DraftCounts()
        for run in runs:
            drafts = drafts + run.drafts
        acceptance = drafts.acceptance("scout")
        ceiling = predicted = None
        costs = outcome.costs
        if costs is not None and acceptance is not None:
            ceiling = min(
                costs.scout_tok_s * acceptance, verification_bound(costs, clients, acceptance)
            )
            case = SwarmCase(
                sequences=clients,
                step_s=costs.step,
                scout_tok_s=costs.scout_tok_s,
                draft_delay_s=latency / 1000,
                news_delay_s=0.0,
                acceptance=acceptance,
                k=DRAFT_MAX,
                padded=costs.padded,
            )
            predicted = simulate(case)
        rows.append(
            FairTestbedRow(
                latency_ms=latency,
                clients=clients,
                sampling=sampling,
                alone_tok_s=statistics.median([run.tokens_per_s for run in alone]),
                scout_tok_s=statistics.median([run.tokens_per_s for run in runs]),
                acceptance=acceptance,
                identical=all(run.texts == alone[0].texts for run in runs),
                ceiling_tok_s=ceiling,
                predicted_tok_s=predicted,
            )
        )
    return rows


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def testbed_markdown(plan: FairTestbedPlan, outcome: FairTestbedOutcome, runs: int) -> list[str]:
    """The section of the report: costs, one row per workload with the scout, the targets."""
    lines = ["## Scout testbed: a drafter on a core of its own", ""]
    lines += [
        f"The oracle serves the embedded model as {ORACLE_TYPE} (made with llama.cpp's "
        f"quantize), pinned to core {ORACLE_CORE} with one thread and n-gram drafts off; one "
        f"`shard scout --threads 1` drafts with the embedded Q4_K_M model on core {SCOUT_CORE}. "
        f"{plan.requests_per_client} requests per client, back to back, max_tokens "
        f"{plan.max_tokens}, medians over {runs} run(s). Speedup is over the oracle alone on "
        "the same core. Ceiling: the scout's standalone rate times its acceptance, or the rate "
        "verification allows at that acceptance if lower. Predicted: "
        "`benchmarks/swarm_model.py` fed the measured costs and acceptance.",
        "",
    ]
    if outcome.skipped is not None:
        return [*lines, f"Not run: {outcome.skipped}.", ""]
    costs = outcome.costs
    if costs is not None:
        shown = ", ".join(
            f"{s}x{r} {costs.step_s[(s, r)] * 1000:.0f}" for s, r in sorted(costs.step_s)
        )
        lines += [
            f"Measured costs: oracle steps (sequences x rows, ms) {shown}; a lone sequence "
            f"{'is' if costs.padded else 'is not'} padded to two rows on this build; the "
            f"scout decodes {costs.scout_tok_s:.1f} tok/s alone.",
            "",
        ]
    rows = summarize_testbed(outcome)
    lines += [
        "| added latency | clients | sampling | alone tok/s | with scout tok/s | speedup "
        "| acceptance | output identical | ceiling tok/s | efficiency | predicted tok/s "
        "| model error |",
        "|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        ceiling = "n/a" if row.ceiling_tok_s is None else f"{row.ceiling_tok_s:.1f}"
        predicted = "n/a" if row.predicted_tok_s is None else f"{row.predicted_tok_s:.1f}"
        error = "n/a" if row.model_error is None else f"{row.model_error:+.0%}"
        lines.append(
            f"| {row.latency_ms} ms | {row.clients} | {row.sampling} | {row.alone_tok_s:.1f} "
            f"| {row.scout_tok_s:.1f} | {row.speedup:.2f}x | {_percent(row.acceptance)} "
            f"| {'yes' if row.identical else '**no**'} | {ceiling} "
            f"| {_percent(row.efficiency)} | {predicted} | {error} |"
        )
    lines += ["", *target_lines(rows), "", *deployment_markdown()]
    return lines


def target_lines(rows: Sequence[FairTestbedRow]) -> list[str]:
    """Issue 13's targets, met or not, from the rows."""
    lines = []
    single = [r for r in rows if r.latency_ms == 20 and r.clients == 1 and r.sampling == "greedy"]
    for row in single:
        met = row.speedup >= SINGLE_STREAM_TARGET and row.identical
        lines.append(
            f"- Single stream at 20 ms, greedy: {row.speedup:.2f}x the oracle alone, output "
            f"{'identical' if row.identical else 'different'} (target at least "
            f"{SINGLE_STREAM_TARGET}x, identical): **{'met' if met else 'not met'}**."
        )
    four = [r for r in rows if r.clients == 4]
    if four:
        slowest = min(four, key=lambda r: r.speedup)
        met = slowest.speedup >= 1.0
        lines.append(
            f"- 4 clients, slowest workload ({slowest.sampling}, {slowest.latency_ms} ms): "
            f"{slowest.speedup:.2f}x the oracle alone (target: never slower): "
            f"**{'met' if met else 'not met'}**."
        )
    agreeing = [r for r in rows if r.model_error is not None]
    within = [r for r in agreeing if abs(r.model_error or 0.0) <= MODEL_TOLERANCE]
    lines.append(
        f"- The swarm model is within {MODEL_TOLERANCE:.0%} of the testbed on {len(within)} of "
        f"{len(agreeing)} workloads (target: at least 3): "
        f"**{'met' if len(within) >= 3 else 'not met'}**."
    )
    different = [r for r in rows if not r.identical]
    if different:
        lines.append(f"- Output differed from the oracle alone's in {len(different)} workload(s).")
    return lines
