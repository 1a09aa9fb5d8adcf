"""The weight-types section: per GGUF weight type, whether drafts are exact on this llama.cpp
build and what its kernels cost on prompts and on decode steps.

On llama-cpp-python's default CPU build (llamafile on), llamafile's sgemm computes matmuls of
2+ rows of F32, F16, BF16 and IQ4_NL weights and ggml's vec_dot those of one row; the two
accumulate in different orders, so a token decoded alone gets other logits than the same token
verified in a draft. Shard pads such types: a decode that would have one row with logits gets
a second (`drafts_are_exact(..., pad_single_rows=True)` checks that this makes them exact).
This section measures, per type:

- exactness as is and with the padding (`shard.engine.spec.exactness.drafts_are_exact`);
- a 500-token prompt in one decode, logits for the last token (padded: the last two);
- decode steps of 1 and 8 sequences x 1, 2 and 4 tokens, every token with logits (as
  verification reads them), each sequence with 50 tokens already cached. The draft cost, the
  step with a one-token draft over the step without (1x2 / 1x1, 8x2 / 8x1), decides whether
  short drafts pay; a lone padded sequence pays 1x2 where it would pay 1x1.

Every type but the embedded model's own (Q4_K_M) is made from the embedded model once, with
llama.cpp's quantize (`allow_requantize`), into `<cache dir>/weight-types/` and reused. Models
load in this process, one at a time, through Shard's own `LlamaModel`, so the kernels are the
ones Shard serves with; `PYTHONPATH` pointing at another llama-cpp-python build (for instance
one built with `-DGGML_LLAMAFILE=OFF`) measures that build.
"""

import ctypes
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.cpu import OtherLoadMeter, wait_for_idle
from benchmarks.harness import Harness, Journal

if TYPE_CHECKING:
    from shard.engine.llama_model import Batch, LlamaModel

# name -> llama.cpp's `llama_ftype` constant in llama_cpp, looked up when a file is made
FILE_TYPES: dict[str, str] = {
    "F32": "LLAMA_FTYPE_ALL_F32",
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "BF16": "LLAMA_FTYPE_MOSTLY_BF16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "IQ4_NL": "LLAMA_FTYPE_MOSTLY_IQ4_NL",
    "TQ1_0": "LLAMA_FTYPE_MOSTLY_TQ1_0",
    "TQ2_0": "LLAMA_FTYPE_MOSTLY_TQ2_0",
}
WEIGHT_TYPES: tuple[str, ...] = tuple(FILE_TYPES)
EMBEDDED_TYPE = "Q4_K_M"  # the type of Shard's embedded model: measured as it is
SMOKE_WEIGHT_TYPES: tuple[str, ...] = (EMBEDDED_TYPE,)

# The context every type is measured in: Shard's 8 sequences, a prompt fits one decode.
N_CTX_PER_SEQ = 1024
N_SEQ = 8
N_BATCH = 512
PROMPT_TOKENS = 500
PREFIX_TOKENS = 50  # cached in every sequence before the decode steps
STEP_SHAPES: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (1, 4), (8, 1), (8, 2), (8, 4))
"""(sequences, tokens per sequence) of the timed decode steps."""
PROMPT_TEXT = (
    "The history of the lighthouse begins with fires lit on hills above dangerous coasts. "
    "Later, towers of stone carried lamps of oil, and mirrors gathered their light into beams "
    "that sailors could see from far out at sea. Keepers lived beside them with their "
    "families, trimming wicks, winding clockwork and writing the weather in their logs. "
)
LLAMAFILE_MARK = "LLAMAFILE = 1"  # in llama_print_system_info() when llamafile is built in


@dataclass(frozen=True)
class WeightTypesPlan:
    """Which types to measure, on how many threads, how many times."""

    types: tuple[str, ...]
    threads: int
    step_repetitions: int = 15
    prompt_repetitions: int = 3


@dataclass(frozen=True)
class BuildInfo:
    """The llama-cpp-python that ran: version, where it was imported from, its features."""

    version: str
    location: str
    system_info: str

    @property
    def llamafile(self) -> bool:
        return LLAMAFILE_MARK in self.system_info


@dataclass(frozen=True)
class WeightTypeRow:
    """One type's measurements; times in milliseconds (medians)."""

    name: str
    file_mib: float
    exact: bool
    exact_padded: bool
    prompt_ms: float
    prompt_padded_ms: float
    step_ms: dict[tuple[int, int], float]
    other_cpu: float | None = None
    prompt_tokens: int = PROMPT_TOKENS

    @property
    def padded(self) -> bool:
        """Whether Shard pads single rows for this type on this build (its start-up check:
        not exact as it is, exact with the padding)."""
        return not self.exact and self.exact_padded

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_tokens / (self.prompt_ms / 1000)

    @property
    def prompt_padded_tokens_per_s(self) -> float:
        return self.prompt_tokens / (self.prompt_padded_ms / 1000)

    def draft_cost(self, sequences: int) -> float | None:
        """A step with a one-token draft per sequence over one without (e.g. 1x2 / 1x1)."""
        plain, drafted = self.step_ms.get((sequences, 1)), self.step_ms.get((sequences, 2))
        return drafted / plain if plain and drafted is not None else None


@dataclass
class WeightTypesOutcome:
    """What the section measured, and the types it could not measure (with the reason)."""

    build: BuildInfo
    source: Path
    cache_dir: Path
    rows: list[WeightTypeRow] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def build_info() -> BuildInfo:
    """The imported llama_cpp: the one first on sys.path (PYTHONPATH can pick another)."""
    import llama_cpp

    system_info = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    return BuildInfo(
        version=str(llama_cpp.__version__),
        location=str(Path(llama_cpp.__file__).parent),
        system_info=system_info,
    )


def _forward_errors(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    if level == 4:  # GGML_LOG_LEVEL_ERROR: quantize's per-tensor chatter stays quiet
        print(text.decode(errors="replace").rstrip(), file=sys.stderr, flush=True)


_LOG_CALLBACK: list[Any] = []  # keeps the ctypes callback alive while llama.cpp holds it


def _quiet_llama_log() -> None:
    import llama_cpp

    if not _LOG_CALLBACK:
        _LOG_CALLBACK.append(llama_cpp.llama_log_callback(_forward_errors))
    llama_cpp.llama_log_set(_LOG_CALLBACK[0], ctypes.c_void_p())


def weight_type_file(name: str, source: Path, directory: Path) -> Path:
    """The embedded model as weight type `name`: the source itself for its own type, else a
    file made once with llama.cpp's quantize (requantizing) and reused."""
    if name == EMBEDDED_TYPE:
        return source
    base = source.stem.removesuffix(EMBEDDED_TYPE.lower()).rstrip("-_") or source.stem
    target = directory / f"{base}-{name.lower()}.gguf"
    if target.is_file():
        return target
    import llama_cpp

    directory.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    _quiet_llama_log()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FILE_TYPES[name])
    params.allow_requantize = True
    print(f"making {target.name} from {source.name}", flush=True)
    status = llama_cpp.llama_model_quantize(
        str(source).encode(), str(partial).encode(), ctypes.byref(params)
    )
    if status != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"llama_model_quantize to {name} returned {status}")
    partial.replace(target)
    return target


def _median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000


def _timed_decode(model: "LlamaModel", batch: "Batch") -> float:
    started = time.perf_counter()
    model.decode(batch)
    return time.perf_counter() - started


def _prompt_seconds(
    model: "LlamaModel", batch: "Batch", tokens: Sequence[int], logit_rows: int
) -> float:
    """One decode of the whole prompt in sequence 0, logits for its last `logit_rows` tokens;
    forgotten again after."""
    batch.clear()
    for position, token in enumerate(tokens):
        batch.add(token, position, 0, position >= len(tokens) - logit_rows)
    seconds = _timed_decode(model, batch)
    model.forget(0)
    return seconds


def _step_seconds(
    model: "LlamaModel", batch: "Batch", tokens: Sequence[int], shape: tuple[int, int]
) -> float:
    """One decode step: `sequences` x `count` tokens after each sequence's cached prefix, in
    ascending sequence order (one sub-batch), every token with logits; then rewound."""
    sequences, count = shape
    batch.clear()
    for seq_id in range(sequences):
        for offset in range(count):
            position = PREFIX_TOKENS + offset
            batch.add(tokens[position], position, seq_id, True)
    seconds = _timed_decode(model, batch)
    for seq_id in range(sequences):
        model.forget(seq_id, PREFIX_TOKENS)
    return seconds


def measure_weight_type(name: str, path: Path, plan: WeightTypesPlan) -> WeightTypeRow:
    """Load one type with Shard's LlamaModel and measure it; the model is closed after."""
    from shard.engine.llama_model import ContextShape, LlamaModel
    from shard.engine.spec.exactness import drafts_are_exact

    model = LlamaModel(path, ContextShape(N_CTX_PER_SEQ, N_SEQ, N_BATCH, plan.threads))
    try:
        batch = model.new_batch(N_BATCH)
        try:
            exact = drafts_are_exact(model, batch)
            exact_padded = drafts_are_exact(model, batch, pad_single_rows=True)
            wanted = PROMPT_TOKENS + max(count for _, count in STEP_SHAPES)
            tokens = model.tokenize(PROMPT_TEXT * 20)[:wanted]
            if len(tokens) < wanted:
                raise RuntimeError(f"the prompt text makes only {len(tokens)} tokens")
            prompt = tokens[:PROMPT_TOKENS]
            # A warm-up of each kind, then the two prompts and the step shapes take turns, so
            # a slow spell of the machine spreads over all of them.
            plain: list[float] = []
            padded: list[float] = []
            for repetition in range(1 + plan.prompt_repetitions):
                one = _prompt_seconds(model, batch, prompt, 1)
                two = _prompt_seconds(model, batch, prompt, 2)
                if repetition:
                    plain.append(one)
                    padded.append(two)
            for seq_id in range(N_SEQ):
                batch.clear()
                for position in range(PREFIX_TOKENS):
                    batch.add(tokens[position], position, seq_id, False)
                model.decode(batch)
            steps: dict[tuple[int, int], list[float]] = {shape: [] for shape in STEP_SHAPES}
            for repetition in range(1 + plan.step_repetitions):
                for shape in STEP_SHAPES:
                    seconds = _step_seconds(model, batch, tokens, shape)
                    if repetition:
                        steps[shape].append(seconds)
        finally:
            batch.free()
    finally:
        model.close()
    return WeightTypeRow(
        name=name,
        file_mib=path.stat().st_size / 2**20,
        exact=exact,
        exact_padded=exact_padded,
        prompt_ms=_median_ms(plain),
        prompt_padded_ms=_median_ms(padded),
        step_ms={shape: _median_ms(samples) for shape, samples in steps.items()},
    )


def _summary(row: WeightTypeRow) -> str:
    steps = ", ".join(f"{s}x{k} {row.step_ms[(s, k)]:.1f}" for s, k in STEP_SHAPES)
    other = "n/a" if row.other_cpu is None else f"{row.other_cpu:.0%}"
    return (
        f"  {row.name}: exact {row.exact}, padded {row.exact_padded}; prompt "
        f"{row.prompt_tokens_per_s:.0f} tok/s; steps (ms) {steps}; other CPU {other}"
    )


def run_weight_types(
    plan: WeightTypesPlan, cache_dir: Path, harness: Harness, journal: Journal
) -> WeightTypesOutcome:
    """Every type of the plan in turn, on a quiet CPU; a type measured while other processes
    took more than `max_other_cpu` is measured again (up to `retries` times)."""
    from shard.default_model import default_model_path

    source = default_model_path()
    outcome = WeightTypesOutcome(build_info(), source, cache_dir / "weight-types")
    build = outcome.build
    print(
        f"weight types on llama-cpp-python {build.version} ({build.location}), llamafile "
        f"{'on' if build.llamafile else 'off'}",
        flush=True,
    )
    waited = False  # the first wait goes in the journal, as before a server starts
    for name in plan.types:
        try:
            path = weight_type_file(name, source, outcome.cache_dir)
        except (OSError, RuntimeError) as error:
            outcome.skipped[name] = str(error)
            journal.failures[f"weight type {name}"] = str(error)
            continue
        row: WeightTypeRow | None = None
        for attempt in range(1 + harness.retries):
            if attempt:
                print("  other processes shared the CPU: measuring again", flush=True)
            if waited:
                wait_for_idle(harness.idle_wait_s)
            else:
                journal.before_start("weight-types", harness)
                waited = True
            meter = OtherLoadMeter()
            meter.start()
            try:
                measured = measure_weight_type(name, path, plan)
            except (OSError, RuntimeError, ValueError) as error:
                if row is None:  # else the disturbed measurement before stands
                    outcome.skipped[name] = str(error)
                    journal.failures[f"weight type {name}"] = str(error)
                break
            row = replace(measured, other_cpu=meter.stop())
            print(_summary(row), flush=True)
            if (row.other_cpu or 0.0) <= harness.max_other_cpu:
                break
        if row is not None:
            outcome.rows.append(row)
    return outcome
