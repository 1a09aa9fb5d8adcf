"""Section 2: input-grounded tasks, where the answer copies long stretches of the prompt.

Editing given code and extracting from a given text are what drafts are for: the next tokens
are often already in the context. Shard runs them greedily, one client, in three modes:

- `off`: no drafts at all (`--draft-max 0 --no-ngram-drafts`), the reference;
- `ngram`: default flags, drafts from n-gram lookup in the context;
- `prediction`: default flags, and every request carries the grounding text (the original
  code, the source prose) as its Predicted Outputs `prediction`, as an editor would send it;
- `scout`: default flags plus one `shard scout` process beside the oracle. The oracle gets
  the cores the scout does not use (one of two here): two sets of llama.cpp threads on the
  same cores slow each other far more than either works, and a real scout has a machine of
  its own.

Greedy output must be byte-identical in every mode (drafts are only ever verified), so each
mode's text is compared with the reference; acceptance comes from the oracle's counters.

Two peer modes run the same tasks on llama.cpp's server: `llama-server` (no drafts) and
`llama-server-ngram` (`--spec-type ngram-mod`, its own n-gram drafts). They have no Shard
counters, and their text is compared with Shard's drafts-off text only for information:
llama-server keeps llama.cpp's default kernels and KV-cache types, which Shard changes so that
a sequence's output does not depend on its batch, so the two may round differently and a
difference there is no losslessness bug.
"""

import asyncio
import contextlib
import dataclasses
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from benchmarks.chat_client import connect
from benchmarks.cpu import OtherLoadMeter
from benchmarks.harness import Harness, Journal
from benchmarks.oracle_metrics import DraftCounts, draft_counts
from benchmarks.scouts import (
    RunningScout,
    ScoutFailed,
    display,
    kind_missing,
    running_scout,
    scout_command,
)
from benchmarks.servers import (
    ServerConfig,
    ServerFailed,
    free_port,
    launch_spec,
    log_tail,
    running_server,
    server_url,
)
from benchmarks.workload import WARMUP_PROMPT, TimeLimitExceeded

SHARD_MODES: tuple[str, ...] = ("off", "ngram", "prediction", "scout")
PEER_MODES: tuple[str, ...] = ("llama-server", "llama-server-ngram")  # server names as modes
GROUNDED_MODES: tuple[str, ...] = (*SHARD_MODES, *PEER_MODES)
REFERENCE_MODE = "off"
MODE_FLAGS: dict[str, tuple[str, ...]] = {
    "off": ("--draft-max", "0", "--no-ngram-drafts"),
    "ngram": (),
    "prediction": (),
    "scout": (),
}
DRAFT_SOURCES: tuple[str, ...] = ("ngram", "prediction", "scout")
PREDICTION_TARGETS = {"off": 3.0, "ngram": 1.3}
"""The code edit with its prediction, whole request, at least this many times each mode."""

CODE_TEXT = """\
def process_logits(logits, params, generated_counts):
    \"\"\"Apply logit_bias and the presence/frequency penalties; returns a new array.\"\"\"
    processed = np.array(logits, dtype=np.float32, copy=True)
    if params.logit_bias:
        ids = np.fromiter(params.logit_bias.keys(), dtype=np.int64)
        processed[ids] += np.fromiter(params.logit_bias.values(), dtype=np.float32)
    if generated_counts and (params.presence_penalty or params.frequency_penalty):
        ids = np.fromiter(generated_counts.keys(), dtype=np.int64)
        counts = np.fromiter(generated_counts.values(), dtype=np.float32)
        processed[ids] -= counts * params.frequency_penalty + params.presence_penalty
    return processed


def target_distribution(processed, params):
    \"\"\"Softmax at the temperature, cut to the top_p nucleus and renormalised.\"\"\"
    scaled = processed.astype(np.float64) / params.temperature
    scaled -= scaled.max()
    probs = np.exp(scaled)
    probs /= probs.sum()
    if params.top_p < 1.0:
        probs = nucleus(probs, params.top_p)
    return probs
"""

CITY_TEXT = """\
The spring survey started in Lisbon, where the team met the harbour engineers. Most of the \
first week went into checking instruments and arguing about the schedule. By Thursday the \
equipment was packed and shipped by rail to Madrid. Nobody expected the customs forms to take \
two full days.

The second leg was quieter. The group spent a long weekend reading reports on tidal data and \
sediment samples. On Monday they flew to Copenhagen to compare notes with a Danish lab. The \
Danish researchers had measured the same currents with a different method. Their results \
agreed to within three percent, which pleased everyone.

In June the project moved inland. A small team drove from Vienna to Budapest along the river, \
stopping at every lock to collect water samples. The weather was hot and the van had no air \
conditioning. Several samples spoiled and had to be taken again. The final report was written \
in Prague during a rainy week in July. It ran to two hundred pages and nobody read all of it.
"""


@dataclass(frozen=True)
class GroundedTask:
    """One prompt whose answer should mostly be copied from the prompt."""

    name: str
    description: str
    prompt: str
    prediction: str
    """What the `prediction` mode sends as the request's predicted output."""


def grounded_tasks() -> list[GroundedTask]:
    """The tasks: rename an identifier through a piece of code; copy sentences out of a text.

    The code is short enough for the whole of it to fit in the answer, so the answer is
    about the edit (a long file cut at max_tokens would be mostly other lines). The small
    model then goes on, often repeating itself, until max_tokens.
    """
    lines = CODE_TEXT.count("\n")
    uses = CODE_TEXT.count("params")
    return [
        GroundedTask(
            "code edit",
            f"rename `params` to `options` in {lines} lines of Python where it occurs {uses} times",
            "Rewrite this code with every `params` renamed to `options`:\n\n"
            f"```python\n{CODE_TEXT}```",
            f"```python\n{CODE_TEXT}```",
        ),
        GroundedTask(
            "extraction",
            f"copy the sentences that mention a city from {len(CITY_TEXT)} characters of prose",
            f"Copy every sentence that mentions a city from this text:\n\n{CITY_TEXT}",
            CITY_TEXT,
        ),
    ]


@dataclass(frozen=True)
class GroundedPlan:
    """Which modes to run and how long each answer may be."""

    modes: tuple[str, ...]
    max_tokens: int
    time_limit_s: float  # an answer slower than this stops its mode: far too slow to wait for


@dataclass(frozen=True)
class GroundedSample:
    """One task answered once in one mode."""

    mode: str
    task: str
    run: int
    text: str
    completion_tokens: int
    latency_s: float
    drafts: DraftCounts | None  # None: a peer, which has no Shard draft counters
    decode_tokens_per_s: float | None = None
    """Tokens after the first over the time from the first to the last: what drafts speed up."""

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens over the whole request, prompt processing included."""
        return self.completion_tokens / self.latency_s


@dataclass
class GroundedOutcome:
    """Everything the section measured, and which modes it could not run and why."""

    tasks: list[GroundedTask]
    samples: list[GroundedSample] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # not run, and why
    stopped: dict[str, str] = field(default_factory=dict)  # cut off by the time limit, and why
    other_cpu: dict[str, float | None] = field(default_factory=dict)
    scout_oracle_threads: int = 0  # the oracle's threads in the scout mode


@dataclass(frozen=True)
class GroundedRow:
    """One mode on one task over all runs."""

    mode: str
    task: str
    runs: int
    completion_tokens: int
    tokens_per_s: float  # median over runs
    speedup: float | None  # over the reference mode's median; None without a reference
    decode_tokens_per_s: float | None  # median over runs; None if no run streamed two tokens
    decode_speedup: float | None
    identical: bool | None  # every run's text equals the reference's; None without one
    drafts: DraftCounts | None  # summed over runs; None for a peer


def summarize_grounded(outcome: GroundedOutcome) -> list[GroundedRow]:
    """Medians per (mode, task), compared with the drafts-off reference."""
    groups: dict[tuple[str, str], list[GroundedSample]] = {}
    for sample in outcome.samples:
        groups.setdefault((sample.mode, sample.task), []).append(sample)
    rows = []
    for (mode, task), samples in groups.items():
        reference = groups.get((REFERENCE_MODE, task))
        rate = statistics.median(sample.tokens_per_s for sample in samples)
        decode_rate = _median_decode_rate(samples)
        speedup = identical = decode_speedup = None
        if reference:
            speedup = rate / statistics.median(sample.tokens_per_s for sample in reference)
            identical = all(sample.text == reference[0].text for sample in samples)
            reference_decode = _median_decode_rate(reference)
            if decode_rate is not None and reference_decode:
                decode_speedup = decode_rate / reference_decode
        drafts: DraftCounts | None = DraftCounts()
        for sample in samples:
            drafts = None if drafts is None or sample.drafts is None else drafts + sample.drafts
        rows.append(
            GroundedRow(
                mode=mode,
                task=task,
                runs=len(samples),
                completion_tokens=round(statistics.median(s.completion_tokens for s in samples)),
                tokens_per_s=rate,
                speedup=speedup,
                decode_tokens_per_s=decode_rate,
                decode_speedup=decode_speedup,
                identical=identical,
                drafts=drafts,
            )
        )
    return rows


def drafts_changed_output(rows: Sequence[GroundedRow]) -> bool:
    """Whether some Shard mode's greedy text differed from drafts off: a losslessness bug. A
    peer's text is left out (llama-server's kernels may round differently)."""
    return any(row.identical is False and row.mode in SHARD_MODES for row in rows)


def _median_decode_rate(samples: Sequence[GroundedSample]) -> float | None:
    rates = [s.decode_tokens_per_s for s in samples if s.decode_tokens_per_s is not None]
    return statistics.median(rates) if rates else None


async def _answer_tasks(
    base_url: str,
    api_key: str,
    mode: str,
    tasks: Sequence[GroundedTask],
    plan: GroundedPlan,
    runs: int,
    samples: list[GroundedSample],
) -> None:
    """Every task once per run, each bracketed by readings of the draft counters (Shard's
    modes only); samples are appended as they come, so a mode stopped by the time limit keeps
    what it measured."""
    counted = mode in SHARD_MODES
    client = await connect(base_url, api_key)
    try:
        await client.complete(WARMUP_PROMPT, 8)
        for run in range(runs):
            for task in tasks:
                before = await draft_counts(base_url, api_key) if counted else None
                fields: dict[str, object] = {"temperature": 0}
                if mode == "prediction":
                    fields["prediction"] = {"type": "content", "content": task.prediction}
                try:
                    answer = await asyncio.wait_for(
                        client.complete(task.prompt, plan.max_tokens, fields), plan.time_limit_s
                    )
                except TimeoutError:
                    raise TimeLimitExceeded(
                        f"answering the {task.name} task took more than {plan.time_limit_s:g} s"
                    ) from None
                after = await draft_counts(base_url, api_key) if counted else None
                samples.append(
                    GroundedSample(
                        mode=mode,
                        task=task.name,
                        run=run,
                        text=answer.text,
                        completion_tokens=answer.completion_tokens,
                        latency_s=answer.latency_s,
                        drafts=None if after is None or before is None else after.since(before),
                        decode_tokens_per_s=answer.decode_tokens_per_s,
                    )
                )
                decode = answer.decode_tokens_per_s
                print(
                    f"  {mode} / {task.name}: {samples[-1].tokens_per_s:.1f} tok/s, decode "
                    f"{'n/a' if decode is None else f'{decode:.1f}'} tok/s "
                    f"({answer.completion_tokens} tokens in {answer.latency_s:.2f} s)",
                    flush=True,
                )
    finally:
        await client.aclose()


def run_mode(
    mode: str,
    outcome: GroundedOutcome,
    plan: GroundedPlan,
    config: ServerConfig,
    harness: Harness,
    journal: Journal,
) -> None:
    """Start Shard in one mode (and its scout), or a peer server, answer every task, stop
    them."""
    peer = mode in PEER_MODES
    label = f"{mode}, grounded" if peer else f"shard, drafts {mode}"
    journal.before_start(label, harness)
    port = free_port()
    if peer:
        spec = launch_spec(mode, config, port)
    else:
        oracle = dataclasses.replace(config, shard_args=MODE_FLAGS[mode])
        if mode == "scout":
            outcome.scout_oracle_threads = harness.oracle_threads_beside_scout(config.threads)
            oracle = dataclasses.replace(oracle, threads=outcome.scout_oracle_threads)
        spec = launch_spec("shard", oracle, port)
    journal.launch_commands[label] = spec.display(port)
    if mode == "scout":
        journal.launch_commands["its scout"] = display(
            scout_command("scout", server_url(port), config.api_key, harness.scout_threads)
        )
    log = harness.log_dir / (f"{mode}-grounded.log" if peer else f"shard-{mode}.log")
    try:
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(running_server(spec, log, harness.startup_timeout_s))
            pids = [server.pid]
            if mode == "scout":
                scout: RunningScout = stack.enter_context(
                    running_scout(
                        "scout",
                        server.base_url,
                        config.api_key,
                        harness.log_dir / "scout-grounded.log",
                        harness.scout_timeout_s,
                        harness.scout_threads,
                    )
                )
                pids.append(scout.pid)
            meter = OtherLoadMeter(*pids)
            meter.start()
            try:
                asyncio.run(
                    _answer_tasks(
                        server.base_url,
                        config.api_key,
                        mode,
                        outcome.tasks,
                        plan,
                        harness.runs,
                        outcome.samples,
                    )
                )
            except TimeLimitExceeded as error:
                outcome.stopped[mode] = str(error)
                print(f"  drafts {mode}: {error}; stopping this mode", flush=True)
            outcome.other_cpu[mode] = meter.stop()
    except (ServerFailed, ScoutFailed, RuntimeError, OSError, httpx.HTTPError) as error:
        journal.failures[label] = str(error).splitlines()[0]
        print(f"{label} failed: {error}\n{log_tail(log)}", file=sys.stderr, flush=True)


def run_grounded(
    plan: GroundedPlan,
    config: ServerConfig,
    harness: Harness,
    journal: Journal,
    shard_scout: str | None,
) -> GroundedOutcome:
    """Every mode in turn; scout modes are skipped with the reason when scouts cannot run."""
    outcome = GroundedOutcome(grounded_tasks())
    for mode in plan.modes:
        missing = kind_missing("scout", shard_scout) if mode == "scout" else None
        if missing is not None:
            outcome.skipped[mode] = missing
            print(f"skipping drafts mode {mode}: {missing}", flush=True)
            continue
        run_mode(mode, outcome, plan, config, harness, journal)
    return outcome
