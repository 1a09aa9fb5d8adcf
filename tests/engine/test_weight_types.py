"""Output with drafts equals output without, for weight types made from the embedded model with
llama.cpp's quantize (docs/architecture.md, invariant 1).

The real model runs in-process on the engine, once with `--draft-max 0`, then with drafts:
from its n-gram index, and from a scout that knows the first run's answer and drafts the next
8 tokens of it after every step (so that a model whose text has nothing to copy, like the
ternary ones, verifies drafts all along). F16 (exact only with single rows padded), the
embedded Q4_K_M and the ternary TQ1_0 and TQ2_0 run in the normal suite, the ternary ones
also served under the spec's model name; every other type with `-m slow`
(`python -m pytest -m slow tests/engine/test_weight_types.py`, about 2 minutes on 2 cores).
The served Q4_K_M is checked end to end in tests/engine/test_speculation.py.
"""

import asyncio
import ctypes
from dataclasses import replace
from pathlib import Path

import llama_cpp
import pytest

from shard.default_model import default_model_path
from shard.engine.client import EngineClient
from shard.engine.llama_model import ContextShape, LlamaModel
from shard.engine.spec.exactness import drafts_are_exact
from shard.engine.types import (
    ChatMessage,
    DraftOutcome,
    GenerationRequest,
    Progress,
    SamplingParams,
    ScoutDraft,
    SequenceUpdate,
)
from shard.engine.worker import EngineConfig
from tests.conftest import TEST_DECODE_TIMINGS, start_oracle, stop_oracle

FILE_TYPES: dict[str, int] = {
    "F32": llama_cpp.LLAMA_FTYPE_ALL_F32,
    "F16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16,
    "BF16": llama_cpp.LLAMA_FTYPE_MOSTLY_BF16,
    "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
    "Q6_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K,
    "Q5_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M,
    "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M,
    "IQ4_NL": llama_cpp.LLAMA_FTYPE_MOSTLY_IQ4_NL,
    "TQ1_0": llama_cpp.LLAMA_FTYPE_MOSTLY_TQ1_0,
    "TQ2_0": llama_cpp.LLAMA_FTYPE_MOSTLY_TQ2_0,
}
IN_THE_SUITE = ("F16", "Q4_K_M", "TQ1_0", "TQ2_0")
TERNARY = ("TQ1_0", "TQ2_0")
SPEC_NAME = "llama-3-70b-bitnet"
COPY_PROMPT = (
    "Repeat this list exactly, twice: red apple, green pear, yellow lemon, purple plum, "
    "orange peach, brown fig, black cherry."
)
REQUESTS = (
    GenerationRequest(
        "greedy",
        (ChatMessage("user", COPY_PROMPT),),
        SamplingParams(seed=1, temperature=0.0),
        48,
        token_ids=True,
    ),
    GenerationRequest(
        "seeded",
        (ChatMessage("user", COPY_PROMPT),),
        SamplingParams(seed=7, temperature=0.7),
        48,
        token_ids=True,
    ),
)


def quantized(name: str, directory: Path) -> Path:
    """The embedded model converted to `name` (requantizing from Q4_K_M, as the README says
    other weight types are made)."""
    if name == "Q4_K_M":
        return default_model_path()  # the embedded model itself
    target = directory / f"gemma-3-270m-{name.lower()}.gguf"
    if not target.exists():
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = FILE_TYPES[name]
        params.allow_requantize = True
        source, out = str(default_model_path()).encode(), str(target).encode()
        assert llama_cpp.llama_model_quantize(source, out, ctypes.byref(params)) == 0
    return target


Expected = dict[str, tuple[int, ...]]
"""Each request's prompt and completion token ids, from the run without drafts."""


def answers(config: EngineConfig, teach: Expected | None = None) -> tuple[Expected, int, bool]:
    """Each request's token ids, how many draft tokens were verified, and the start-up check.

    With `teach`, a scout that knows the answer drafts the next 8 tokens of it after every
    step, so that even a model whose text has nothing to copy verifies drafts all along.
    """
    verified = 0
    client: EngineClient | None = None
    current = ""  # the request running now: they run one at a time
    histories: dict[str, list[int]] = {}

    def listen(reports: list[Progress]) -> None:
        nonlocal verified
        for report in reports:
            if isinstance(report, DraftOutcome):
                verified += report.proposed
            elif isinstance(report, SequenceUpdate) and teach is not None and client:
                history = histories.setdefault(report.sequence_key, [])
                history[report.start :] = report.tokens
                answer = teach[current]
                ahead = tuple(answer[len(history) : len(history) + 8])
                draft = ScoutDraft("teacher", len(history), ahead)
                client.drafts.offer(report.sequence_key, draft)

    async def main() -> tuple[Expected, bool]:
        nonlocal client, current
        client = EngineClient(config, 4)
        client.add_listener(listen)
        client.follow_progress(teach is not None)
        await client.start()
        try:
            ids: Expected = {}
            for request in REQUESTS:
                current = request.request_id
                async with client.generate(request) as generation:
                    tokens = [t async for d in generation.deltas() for t in d.token_ids]
                    ids[request.request_id] = (*generation.prompt_ids, *tokens)
            assert client.status is not None
            return ids, client.status.drafts_exact
        finally:
            await client.stop()

    ids, exact = asyncio.run(main())
    return ids, verified, exact


PLAIN: dict[str, Expected] = {}
"""Each type's answers without drafts, kept for the served ternary models to match."""


def engine_config(name: str, directory: Path, calibration: Path, n_seq: int) -> EngineConfig:
    """The engine the type's checks run: drafts verified whatever their acceptance."""
    return EngineConfig(
        quantized(name, directory),
        n_ctx=512,
        n_seq=n_seq,
        n_batch=256,
        threads=2,
        chat_template="gemma",
        calibration_cache=calibration,
        draft_min_acceptance=0.0,
    )


def check_identical(name: str, directory: Path, calibration: Path) -> None:
    config = engine_config(name, directory, calibration, n_seq=2)
    plain, _, _ = answers(replace(config, draft_max=0, ngram_drafts=False))
    PLAIN[name] = plain
    drafted, verified, exact = answers(config, teach=plain)
    assert verified > 20, f"{name}: too few draft tokens were verified ({verified})"
    assert drafted == plain, f"{name}: output with drafts differs from output without"
    assert exact, f"{name}: the start-up check says drafts are not exact on this build"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("weight-types")


@pytest.fixture(scope="module")
def calibration() -> Path:
    return TEST_DECODE_TIMINGS


@pytest.mark.parametrize("name", IN_THE_SUITE)
def test_drafts_change_no_output(name: str, model_dir: Path, calibration: Path) -> None:
    check_identical(name, model_dir, calibration)


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in FILE_TYPES if name not in IN_THE_SUITE])
def test_drafts_change_no_output_for_every_other_type(
    name: str, model_dir: Path, calibration: Path
) -> None:
    check_identical(name, model_dir, calibration)


@pytest.mark.parametrize("name", TERNARY)
def test_a_ternary_model_serves_under_the_spec_name_as_it_answers_without_drafts(
    name: str, model_dir: Path, calibration: Path, tmp_path: Path
) -> None:
    """`shard oracle --model <TQ file> --served-model-name llama-3-70b-bitnet`, n-gram drafts
    on (the default): the OpenAI client gets the text of the engine's answers without drafts
    (test_drafts_change_no_output), greedy and seeded."""
    if name not in PLAIN:
        check_identical(name, model_dir, calibration)
    path = quantized(name, model_dir)
    flags = ("--model", str(path), "--served-model-name", SPEC_NAME, "--n-ctx", "512")
    oracle = start_oracle(tmp_path, *flags, "--parallel", "2", "--chat-template", "gemma")
    reader = LlamaModel(path, ContextShape(64, 1, 64, 1))  # to turn the ids into text
    try:
        client = oracle.client(max_retries=0, timeout=120)
        assert SPEC_NAME in [model.id for model in client.models.list()]
        for request in REQUESTS:
            sampling = request.sampling
            served = client.chat.completions.create(
                model=SPEC_NAME,
                messages=[{"role": "user", "content": COPY_PROMPT}],
                temperature=sampling.temperature,
                seed=sampling.seed,
                max_tokens=request.max_tokens,
            )
            ids = PLAIN[name][request.request_id]
            completion = ids[served.usage.prompt_tokens :]  # type: ignore[union-attr]
            text = b"".join(reader.piece(token) for token in completion).decode()
            assert served.choices[0].message.content == text, (name, request.request_id)
    finally:
        reader.close()
        stop_oracle(oracle)


def test_f16_is_exact_only_with_two_rows_with_logits_on_llamafile_builds(model_dir: Path) -> None:
    """The mechanism: llamafile's sgemm takes matmuls of 2+ rows and ggml's vec_dot those of
    1 row, and for F16 they accumulate in different orders. Padding every decode to two rows
    with logits keeps every matmul on sgemm; a build without llamafile is exact as it is."""
    llamafile = "LLAMAFILE = 1" in llama_cpp.llama_print_system_info().decode()
    model = LlamaModel(quantized("F16", model_dir), ContextShape(256, 1, 64, 2))
    try:
        batch = model.new_batch(64)
        assert drafts_are_exact(model, batch) is not llamafile
        assert drafts_are_exact(model, batch, pad_single_rows=True) is True
    finally:
        model.close()


Traced = tuple[tuple[int, ...], tuple[float, ...]]
"""A request's prompt and completion token ids, and each completion token's logprob."""

STAGGERED = (
    (COPY_PROMPT, 40, 0.0, 1),
    ("Write a haiku about rain on a tin roof.", 24, 0.7, 3),
    ("Name three rivers in Europe and say where each one ends.", 32, 0.7, 5),
    ("Count from one to ten in French.", 16, 0.0, 2),
)


def _traced(index: int) -> GenerationRequest:
    prompt, max_tokens, temperature, seed = STAGGERED[index]
    sampling = SamplingParams(seed=seed, temperature=temperature, logprobs=True)
    message = (ChatMessage("user", prompt),)
    return GenerationRequest(f"r{index}", message, sampling, max_tokens, token_ids=True)


def traced_answers(
    config: EngineConfig, together: bool, teach: list[Traced] | None
) -> list[Traced]:
    """Each request of STAGGERED, then the first and last again (their prompts now cached but
    for one token), with every completion token's logprob.

    Together, each request starts once the one before has made two tokens, and they end at
    different lengths: prompts are prefilled beside decoding sequences, and sequences with
    gaps between their ids decode together. With `teach`, a scout that knows the answers
    drafts the next 8 tokens after every step.
    """
    client: EngineClient | None = None
    histories: dict[str, list[int]] = {}
    verified = 0

    def listen(reports: list[Progress]) -> None:
        nonlocal verified
        for report in reports:
            if isinstance(report, DraftOutcome):
                verified += report.proposed
            if not isinstance(report, SequenceUpdate) or teach is None or client is None:
                continue
            history = histories.setdefault(report.sequence_key, [])
            history[report.start :] = report.tokens
            for ids, _ in teach:
                if tuple(history) == ids[: len(history)]:
                    ahead = ids[len(history) : len(history) + 8]
                    draft = ScoutDraft("teacher", len(history), ahead)
                    client.drafts.offer(report.sequence_key, draft)

    async def one(index: int, started: asyncio.Event | None, made: asyncio.Event) -> Traced:
        if started is not None:
            await started.wait()
        assert client is not None
        ids: list[int] = []
        logprobs: list[float] = []
        async with client.generate(_traced(index)) as generation:
            async for delta in generation.deltas():
                ids.extend(delta.token_ids)
                logprobs.extend(entry.logprob for entry in delta.logprobs)
                if len(ids) >= 2:
                    made.set()
            made.set()
            return (*generation.prompt_ids, *ids), tuple(logprobs)

    async def main() -> list[Traced]:
        nonlocal client
        client = EngineClient(config, 8)
        client.add_listener(listen)
        client.follow_progress(teach is not None)
        await client.start()
        try:
            order = [0, 1, 2, 3, 0, 3]
            if not together:
                return [await one(index, None, asyncio.Event()) for index in order]
            made = [asyncio.Event() for _ in order]
            first = [one(i, made[n - 1] if n else None, made[n]) for n, i in enumerate(order[:4])]
            traced = list(await asyncio.gather(*first))
            again = [one(i, made[4] if n else None, made[4 + n]) for n, i in enumerate(order[4:])]
            traced += await asyncio.gather(*again)
            assert teach is None or verified > 40, f"too few draft tokens verified: {verified}"
            return traced
        finally:
            await client.stop()

    return asyncio.run(main())


def test_f16_logits_do_not_depend_on_what_else_runs(model_dir: Path, calibration: Path) -> None:
    """On builds where one row takes another kernel, every sequence's logits must still equal
    those it gets alone, bit for bit, whatever shares its decodes: other sequences with gaps
    between their ids, drafts of different lengths, a prompt chunk beside decoding sequences,
    or a cached prompt with one token left to prefill. Logprobs show any difference in the
    logits, not only those that change a token."""
    config = engine_config("F16", model_dir, calibration, n_seq=4)
    alone = traced_answers(replace(config, draft_max=0, prefix_cache=False), False, None)
    together = traced_answers(config, True, alone)
    for index, (want, got) in enumerate(zip(alone, together, strict=True)):
        assert got[0] == want[0], f"request {index}: other tokens"
        assert got[1] == want[1], f"request {index}: other logprobs"
