"""The engine in-process on a fake model with literal logits: drafts never change output,
batching is invisible, cancellation frees sequences, a failed step fails only its requests,
refusals, and the progress feed the swarm follows."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from shard.engine.client import (
    EngineClient,
    EngineNotReadyError,
    Generation,
    QueueFullError,
    RequestRejectedError,
)
from shard.engine.model import TokenBatch
from shard.engine.sampling import token_logprob
from shard.engine.types import (
    NGRAM,
    SCOUT,
    ChatMessage,
    DraftOutcome,
    GenerationRequest,
    Progress,
    SamplingParams,
    ScoutDraft,
    SequenceUpdate,
)
from shard.engine.worker import EngineConfig
from tests.fake_model import FakeBatch, FakeModel

T = TypeVar("T")


def config(**changes: object) -> EngineConfig:
    base = EngineConfig(Path("fake.gguf"), n_ctx=512, n_seq=4, n_batch=64, threads=1)
    return replace(base, **changes)  # type: ignore[arg-type]


def run(
    scenario: Callable[[EngineClient], Awaitable[T]],
    model: FakeModel | None = None,
    engine_config: EngineConfig | None = None,
    max_queue: int = 8,
) -> T:
    """Run `scenario` against an engine on `model`, started and stopped around it."""
    fake = model or FakeModel()

    async def main() -> T:
        client = EngineClient(engine_config or config(), max_queue, lambda _: fake)
        await client.start()
        try:
            return await asyncio.wait_for(scenario(client), 60)
        finally:
            await client.stop()

    return asyncio.run(main())


def request(
    prompt: str = "Hi", max_tokens: int = 40, request_id: str = "r", **sampling: object
) -> GenerationRequest:
    params = SamplingParams(**{"seed": 1, "temperature": 0.0, **sampling})  # type: ignore[arg-type]
    return GenerationRequest(request_id, (ChatMessage("user", prompt),), params, max_tokens)


@dataclass
class Output:
    texts: dict[int, str] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)
    finish: dict[int, str | None] = field(default_factory=dict)


async def complete(client: EngineClient, generation_request: GenerationRequest) -> Output:
    output = Output()
    async with client.generate(generation_request) as generation:
        async for delta in generation.deltas():
            output.texts[delta.index] = output.texts.get(delta.index, "") + delta.text
            output.tokens[delta.index] = delta.completion_tokens
            output.finish[delta.index] = delta.finish_reason
    return output


CASES = [
    request("Copy: abcabcabcabc", max_tokens=60),
    request("Tell me more", max_tokens=50, temperature=0.8, seed=7),
    request(
        "Sampled and penalised",
        max_tokens=50,
        temperature=1.0,
        top_p=0.9,
        seed=3,
        frequency_penalty=0.4,
    ),
    replace(request("Stop early", max_tokens=50), stop=("fga",)),
]


def outputs(engine_config: EngineConfig, concurrently: bool = True) -> list[Output]:
    async def scenario(client: EngineClient) -> list[Output]:
        cases = [replace(case, request_id=f"case-{i}") for i, case in enumerate(CASES)]
        if concurrently:
            return list(await asyncio.gather(*(complete(client, case) for case in cases)))
        return [await complete(client, case) for case in cases]

    return run(scenario, engine_config=engine_config)


def test_ngram_drafts_change_no_output_greedy_or_seeded() -> None:
    outcomes: list[Progress] = []

    async def drafted(client: EngineClient) -> list[Output]:
        client.add_listener(outcomes.extend)
        cases = [replace(case, request_id=f"case-{i}") for i, case in enumerate(CASES)]
        return list(await asyncio.gather(*(complete(client, case) for case in cases)))

    gpu_like = FakeModel(step_seconds=lambda tokens: 0.003)  # draft tokens cost next to nothing
    with_drafts = run(drafted, gpu_like, config(draft_max=8))
    without = outputs(config(draft_max=0, ngram_drafts=False))
    assert [o.texts for o in with_drafts] == [o.texts for o in without]
    accepted = sum(
        o.accepted for o in outcomes if isinstance(o, DraftOutcome) and o.source == NGRAM
    )
    assert accepted > 20, "the repeating text should have accepted n-gram drafts"


def test_concurrent_requests_match_their_solo_runs() -> None:
    together = outputs(config(), concurrently=True)
    alone = outputs(config(), concurrently=False)
    assert [o.texts for o in together] == [o.texts for o in alone]
    assert together[3].finish[0] == "stop"
    assert together[0].finish[0] == "length" and together[0].tokens[0] == 60


def test_n_choices_share_the_prompt_and_differ_by_seed() -> None:
    async def scenario(client: EngineClient) -> Output:
        return await complete(client, replace(request(temperature=1.0, seed=5), n=3))

    output = run(scenario)
    assert sorted(output.texts) == [0, 1, 2]
    assert len(set(output.texts.values())) > 1
    assert run(scenario).texts == output.texts


def scout_that_drafts(
    client: EngineClient, drafts_for: Callable[[list[int]], list[int]]
) -> Callable[[list[Progress]], None]:
    """A listener standing in for the swarm: on every sequence update it posts a draft."""
    histories: dict[str, list[int]] = {}

    def listener(reports: list[Progress]) -> None:
        for report in reports:
            if not isinstance(report, SequenceUpdate) or report.ended:
                continue
            history = histories.setdefault(report.sequence_key, [])
            history.extend(report.tokens)
            draft = ScoutDraft("scout-1", len(history), tuple(drafts_for(history)))
            client.drafts.offer(report.sequence_key, draft)

    return listener


@pytest.mark.parametrize("kind", ["honest", "wrong-last", "random"])
def test_scout_drafts_change_no_output(kind: str) -> None:
    model = FakeModel()
    outcomes: list[Progress] = []
    verifying: list[int] = []

    def right(history: list[int]) -> list[int]:
        """What the fake model will say greedily next (so drafts are accepted)."""
        tokens, drafted = list(history), []
        for _ in range(6):
            tokens.append(int(model.rule(tokens).argmax()))
            drafted.append(tokens[-1])
        return drafted

    def wrong_last(history: list[int]) -> list[int]:
        """Right often enough to be verified, wrong in the token every verification reaches."""
        drafted = right(history)
        return [*drafted[:-1], (drafted[-1] + 1) % model.n_vocab]

    def random(history: list[int]) -> list[int]:
        return [(7 * t + 3) % model.n_vocab for t in right(history)]

    drafts_for = {"honest": right, "wrong-last": wrong_last, "random": random}[kind]

    async def scenario(client: EngineClient) -> Output:
        client.follow_progress(True)
        client.add_listener(outcomes.extend)
        client.add_listener(scout_that_drafts(client, drafts_for))
        verifying.append(model.verifying_decodes)  # after calibration
        output = await complete(client, request("Scout me", max_tokens=80))
        verifying.append(model.verifying_decodes)
        return output

    engine_config = config(ngram_drafts=False, draft_max=6)
    drafted = run(scenario, model, engine_config)
    plain_config = config(draft_max=0, ngram_drafts=False)
    plain = run(lambda c: complete(c, request("Scout me", max_tokens=80)), None, plain_config)
    assert drafted.texts == plain.texts
    scout = [o for o in outcomes if isinstance(o, DraftOutcome) and o.source == SCOUT]
    proposed, accepted = sum(o.proposed for o in scout), sum(o.accepted for o in scout)
    assert proposed > 20, "the scout's drafts must be scored against the target"
    if kind == "random":
        assert accepted == 0 and verifying[1] == verifying[0]  # never worth verifying
        return
    assert verifying[1] - verifying[0] > 5, "the drafts must be verified in decodes"
    assert accepted > 20
    if kind == "wrong-last":
        assert accepted < proposed  # verification rejected the wrong last tokens


def test_progress_is_reported_only_while_followed_and_shown_and_ends() -> None:
    reports: list[Progress] = []

    async def scenario(client: EngineClient) -> None:
        client.add_listener(reports.extend)
        await complete(client, request(request_id="unfollowed", max_tokens=5))
        assert not [r for r in reports if isinstance(r, SequenceUpdate)]
        client.follow_progress(True)
        hidden = replace(request(request_id="ticket text", max_tokens=5), shown_to_scouts=False)
        await complete(client, hidden)  # golden tickets' text: never on the feed
        assert not [r for r in reports if isinstance(r, SequenceUpdate)]
        await complete(client, request(request_id="followed", max_tokens=5))

    run(scenario)
    updates = [r for r in reports if isinstance(r, SequenceUpdate)]
    assert updates[-1].ended
    tokens = [t for u in updates for t in u.tokens]
    assert updates[0].start == 0 and len(tokens) > 5  # the prompt, then each new token


def test_cancelling_frees_the_sequence() -> None:
    async def scenario(client: EngineClient) -> Output:
        long = request(request_id="long", max_tokens=400)
        async with client.generate(long) as generation:
            async for _ in generation.deltas():
                break  # leaving the block cancels
        return await complete(client, request(request_id="next", max_tokens=5))

    model = FakeModel()
    output = run(scenario, model, config(n_seq=1))
    assert output.tokens[0] == 5
    assert len(model.decoded_batches) < 100, "the cancelled request kept decoding"


def test_the_admission_bound_refuses_instead_of_queueing_forever() -> None:
    async def scenario(client: EngineClient) -> None:
        async with client.generate(request(request_id="a", max_tokens=100)):
            with pytest.raises(QueueFullError):
                async with client.generate(request(request_id="b")):
                    pass

    run(scenario, engine_config=config(n_seq=1), max_queue=0)


def test_a_failed_decode_fails_its_requests_and_the_engine_recovers() -> None:
    model = FakeModel()

    async def scenario(client: EngineClient) -> Output:
        model.fail_next_decode = RuntimeError("injected")
        with pytest.raises(RequestRejectedError) as caught:
            await complete(client, request(request_id="doomed"))
        assert caught.value.rejection.code == "internal_error"
        return await complete(client, request(request_id="fine", max_tokens=4))

    assert run(scenario, model).tokens[0] == 4


@pytest.mark.parametrize(
    ("generation_request", "code", "param"),
    [
        (replace(request(), n=5), "invalid_request", "n"),
        (request(logit_bias={999: 1.0}), "invalid_request", "logit_bias"),
        (request("x" * 600), "context_length_exceeded", "messages"),
        (request(max_tokens=500), "context_length_exceeded", "messages"),
    ],
)
def test_refusals_name_the_parameter(
    generation_request: GenerationRequest, code: str, param: str
) -> None:
    async def scenario(client: EngineClient) -> None:
        with pytest.raises(RequestRejectedError) as caught:
            await complete(client, generation_request)
        assert (caught.value.rejection.code, caught.value.rejection.param) == (code, param)

    run(scenario)


def test_a_default_max_tokens_shrinks_to_fit_the_context() -> None:
    async def scenario(client: EngineClient) -> Output:
        return await complete(client, replace(request(max_tokens=5000), shrink_to_fit=True))

    output = run(scenario)
    assert output.finish[0] == "length" and 400 < output.tokens[0] < 512


def test_many_sequences_decode_in_one_batch() -> None:
    model = FakeModel()

    async def scenario(client: EngineClient) -> None:
        cases = [request(request_id=f"r{i}", max_tokens=30) for i in range(4)]
        await asyncio.gather(*(complete(client, case) for case in cases))

    run(scenario, model, config(draft_max=0, ngram_drafts=False))
    assert max(model.decoded_batches) >= 4
    assert len(model.decoded_batches) < 2 * 30, "decoding went one sequence at a time"


def test_logit_bias_bans_and_forces_tokens() -> None:
    async def scenario(client: EngineClient) -> list[Output]:
        plain = await complete(client, request(request_id="plain", max_tokens=20))
        banned = await complete(
            client, request(request_id="banned", max_tokens=20, logit_bias={4: -100.0})
        )
        forced = await complete(
            client, request(request_id="forced", max_tokens=5, logit_bias={20: 100.0})
        )
        return [plain, banned, forced]

    plain, banned, forced = run(scenario)
    assert "b" in plain.texts[0]  # token 4 renders as "b" and the toy language uses it
    assert "b" not in banned.texts[0]
    assert forced.texts[0] == "r" * 5  # token 20


def test_stopping_answers_running_requests_and_refuses_new_ones() -> None:
    async def scenario(client: EngineClient) -> None:
        running = asyncio.ensure_future(complete(client, request(max_tokens=100000)))
        await asyncio.sleep(0.1)
        await client.stop()
        with pytest.raises(RequestRejectedError) as caught:
            await running
        assert caught.value.rejection.code == "service_unavailable"
        assert not client.ready
        with pytest.raises(EngineNotReadyError, match="stopping"):
            async with client.generate(request(request_id="late")):
                pass

    run(scenario, engine_config=config(n_ctx=200000))


def test_a_scout_echoing_decided_tokens_earns_no_credit() -> None:
    """The cheat: a scout with no model reads the sequence's decided tokens (its owner's own
    stream) and sends them back as drafts. They are right, but never ahead of the oracle, so
    no decode verifies them and no outcome (the credit's source) is reported."""
    outcomes: list[Progress] = []
    histories: dict[str, list[int]] = {}

    async def scenario(client: EngineClient) -> Output:
        def echo(reports: list[Progress]) -> None:
            for report in reports:
                if isinstance(report, SequenceUpdate) and not report.ended:
                    history = histories.setdefault(report.sequence_key, [])
                    history[report.start :] = report.tokens
                    copied = ScoutDraft("cheat", len(history) - 4, tuple(history[-4:]))
                    client.drafts.offer(report.sequence_key, copied)

        client.follow_progress(True)
        client.add_listener(outcomes.extend)
        client.add_listener(echo)
        return await complete(client, request("Scout me", max_tokens=60))

    engine_config = config(ngram_drafts=False, draft_max=6, draft_min_acceptance=0.0)
    drafted = run(scenario, FakeModel(), engine_config)
    plain = run(lambda c: complete(c, request("Scout me", max_tokens=60)), None, config())
    assert drafted.texts == plain.texts and histories
    scout = [o for o in outcomes if isinstance(o, DraftOutcome) and o.source == SCOUT]
    assert scout and not [o for o in scout if o.timely]  # all late: judged, never credited


class RowCountSensitiveModel(FakeModel):
    """Like a build whose kernels round differently at every batch size: nothing helps."""

    def decode(self, batch: TokenBatch) -> None:
        super().decode(batch)
        shift = np.float32(1e-4 * len(batch))
        self._logits = [None if x is None else x + shift for x in self._logits]


def sub_batches(seq_ids: list[int], n_ubatch: int = 512) -> list[list[int]]:
    """The rows of each graph run llama.cpp makes of a batch whose rows belong to `seq_ids`,
    with one KV stream per sequence (`llama_batch_allocr::split_equal`, sequential): a run of
    consecutive sequence ids, as many rows of each as all of them still have."""
    used = [False] * len(seq_ids)
    runs: list[list[int]] = []
    while not all(used):
        members: list[int] = []
        for row, seq_id in enumerate(seq_ids):
            next_in_run = not members or seq_id == members[-1] + 1
            if not used[row] and seq_id not in members and next_in_run:
                members.append(seq_id)
        left = {s: [r for r, t in enumerate(seq_ids) if t == s and not used[r]] for s in members}
        rows: list[int] = []
        depth = 0
        while all(len(left[s]) > depth for s in members):
            for seq_id in members:
                rows.append(left[seq_id][depth])
                used[left[seq_id][depth]] = True
            depth += 1
            if (depth + 1) * len(members) > n_ubatch:
                break
        runs.append(rows)
    return runs


def test_sub_batches_follow_llama_cpp_on_literal_batches() -> None:
    """Checked against llama.cpp's F16 logits on every mix of 0 to 4 rows in 4 sequences:
    exactly the rows these runs leave alone differed."""
    assert sub_batches([0, 1, 1, 2]) == [[0, 1, 3], [2]]
    assert sub_batches([1, 3]) == [[0], [1]]
    assert sub_batches([0, 0, 1, 1]) == [[0, 2, 1, 3]]
    assert sub_batches([2, 2, 2]) == [[0, 1, 2]]
    assert sub_batches([0] * 5, n_ubatch=2) == [[0, 1], [2, 3], [4]]


class OneRowKernelModel(FakeModel):
    """Like a llamafile build for F16: a graph run of one row takes another kernel for every
    layer, and one with one row of logits for the last; here it rolls the logits by one
    token, and a row computed alone rolls every later logits of its sequence (its KV)."""

    def __init__(self) -> None:
        super().__init__()
        self.alone: dict[int, set[int]] = {}
        """Each sequence's positions that were decoded in a graph run of their own."""

    def decode(self, batch: TokenBatch) -> None:
        super().decode(batch)
        assert isinstance(batch, FakeBatch)
        entries = batch.entries
        rolled = set()
        for rows in sub_batches([seq_id for _, _, seq_id, _ in entries]):
            if len(rows) == 1:
                _, position, seq_id, _ = entries[rows[0]]
                self.alone.setdefault(seq_id, set()).add(position)
            if len([row for row in rows if entries[row][3]]) == 1:
                rolled.update(rows)
        for row, (_, position, seq_id, _) in enumerate(entries):
            if any(p <= position for p in self.alone.get(seq_id, ())):
                rolled.add(row)
        self._logits = [
            None if x is None else np.roll(x, 1) if row in rolled else x
            for row, x in enumerate(self._logits)
        ]

    def forget(self, seq_id: int, from_position: int = 0) -> None:
        super().forget(seq_id, from_position)
        kept = {p for p in self.alone.get(seq_id, ()) if p < from_position}
        self.alone[seq_id] = kept

    def copy_sequence(self, source: int, target: int) -> None:
        super().copy_sequence(source, target)
        self.alone[target] = set(self.alone.get(source, ()))


@pytest.mark.parametrize(
    ("model", "exact", "padded"),
    [
        (FakeModel(), True, False),
        (RowCountSensitiveModel(), False, False),
        (OneRowKernelModel(), True, True),
    ],
)
def test_the_engine_measures_whether_drafts_are_exact(
    model: FakeModel, exact: bool, padded: bool
) -> None:
    async def scenario(client: EngineClient) -> tuple[bool, bool]:
        assert client.status is not None
        return client.status.drafts_exact, client.status.single_rows_padded

    assert run(scenario, model) == (exact, padded)


@pytest.mark.parametrize("draft_max", [0, 16])
def test_where_one_row_takes_another_kernel_no_decode_has_one_row_of_logits(
    draft_max: int,
) -> None:
    """Lone requests, with drafts and without, prefill and decode: had any decode had a single
    row of logits, its token would come from the rolled logits and the output would differ."""

    async def scenario(client: EngineClient) -> list[Output]:
        return [await complete(client, case) for case in CASES]

    settings = config(draft_max=draft_max, ngram_drafts=draft_max > 0)
    assert run(scenario, OneRowKernelModel(), settings) == run(scenario, FakeModel(), settings)


@pytest.mark.parametrize("draft_max", [0, 16])
def test_where_one_row_takes_another_kernel_what_else_runs_changes_no_output(
    draft_max: int,
) -> None:
    """Requests that start while others decode, end at different lengths (leaving gaps between
    the ids of those still running), draft, and come back with their prompt cached but for
    one token, or fill the context: no row is ever computed in a graph run of its own, nor
    read as the only row of logits of one (docs/architecture.md, invariant 1)."""
    fill = replace(request("Fill the context", max_tokens=500), shrink_to_fit=True)
    cases = [replace(case, request_id=f"case-{i}") for i, case in enumerate([*CASES, fill])]
    cases += [replace(cases[0], request_id="again-0"), replace(cases[2], request_id="again-2")]

    async def staggered(client: EngineClient) -> list[Output]:
        async def later(case: GenerationRequest, wait: float) -> Output:
            await asyncio.sleep(wait)
            return await complete(client, case)

        first = await asyncio.gather(*(later(c, 0.02 * i) for i, c in enumerate(cases[:5])))
        again = await asyncio.gather(*(later(c, 0.01 * i) for i, c in enumerate(cases[5:])))
        return [*first, *again]

    async def alone(client: EngineClient) -> list[Output]:
        return [await complete(client, case) for case in cases]

    drafted = config(draft_max=draft_max, ngram_drafts=draft_max > 0, n_ctx=192)
    plain = config(draft_max=0, ngram_drafts=False, prefix_cache=False, n_ctx=192)
    model = OneRowKernelModel()
    assert run(staggered, model, drafted) == run(alone, FakeModel(), plain)


async def complete_counting_cache(
    client: EngineClient, generation_request: GenerationRequest
) -> tuple[Output, int]:
    output = Output()
    async with client.generate(generation_request) as generation:
        async for delta in generation.deltas():
            output.texts[delta.index] = output.texts.get(delta.index, "") + delta.text
        return output, generation.cached_tokens


SYSTEM = ChatMessage("system", "You are a careful assistant who answers briefly. " * 4)


def turns(answer: str) -> list[GenerationRequest]:
    """A chat's second turn after its first, and another chat with the same system prompt,
    greedy and seeded."""
    first = (SYSTEM, ChatMessage("user", "Tell me a story."))
    return [
        GenerationRequest("turn-1", first, SamplingParams(seed=3, temperature=0.9), 30),
        GenerationRequest(
            "turn-2",
            (*first, ChatMessage("assistant", answer), ChatMessage("user", "And then?")),
            SamplingParams(seed=4, temperature=0.9),
            30,
        ),
        GenerationRequest(
            "other",
            (SYSTEM, ChatMessage("user", "Count.")),
            SamplingParams(seed=0, temperature=0.0),
            30,
        ),
    ]


@pytest.mark.parametrize("cache", [True, False])
def test_the_prefix_cache_reuses_earlier_prompts_and_changes_no_output(cache: bool) -> None:
    async def scenario(client: EngineClient) -> list[tuple[Output, int]]:
        first, turn_2, other = turns("")
        answered = await complete_counting_cache(client, first)
        turn_2 = turns(answered[0].texts[0])[1]
        return [answered, *[await complete_counting_cache(client, r) for r in (turn_2, other)]]

    results = run(scenario, engine_config=config(prefix_cache=cache))
    plain = run(scenario, engine_config=config(prefix_cache=False))
    assert [output.texts for output, _ in results] == [output.texts for output, _ in plain]
    cached = [count for _, count in results]
    if not cache:
        assert cached == [0, 0, 0]
        return
    system_part = len(FakeModel().tokenize("<start_of_turn>user\n" + SYSTEM.content))
    assert cached[0] == 0
    assert cached[1] > system_part  # the whole first turn's prompt, at least
    assert cached[2] >= system_part  # the shared system prompt


def test_a_prefix_cached_in_another_sequence_is_copied_into_the_new_one() -> None:
    """The cache that matches sits in sequence 1 while sequence 0 is the lowest free one: the
    request copies it over (and trims it) instead of decoding the prompt again."""
    model = FakeModel()
    unrelated = request("Something else entirely", max_tokens=5, request_id="a")
    shared = turns("")[2]

    async def scenario(client: EngineClient) -> tuple[Output, int]:
        async with client.generate(unrelated) as first:  # takes sequence 0 first
            await asyncio.gather(
                complete(client, replace(shared, request_id="b")),  # sequence 1
                collect(first),
            )
        again = replace(shared, request_id="c", messages=(SYSTEM, ChatMessage("user", "Why?")))
        return await complete_counting_cache(client, again)

    output, cached = run(scenario, model, config(n_seq=2))
    assert cached > 200
    plain = run(scenario, FakeModel(), config(n_seq=2, prefix_cache=False))
    assert output.texts == plain[0].texts and plain[1] == 0


async def collect(generation: Generation) -> None:
    async for _ in generation.deltas():
        pass


def test_threads_are_ceded_to_scouts_on_this_machine_only_from_the_default() -> None:
    """While local scouts draft with n CPU threads, an engine on the default thread count
    decodes with n fewer (never fewer than half), and takes them back when they leave."""
    fake = FakeModel()

    async def ceding(client: EngineClient) -> list[int]:
        seen = []
        for ceded in (1, 3, 9, 0):
            client.cede_threads(ceded)
            await complete(client, request(max_tokens=4))  # commands are taken between steps
            seen.append(client.threads)
        return seen

    assert run(ceding, fake, config(threads=4, cede_threads=True)) == [3, 2, 2, 4]
    assert fake.threads == [3, 2, 4]  # the model is told only of changes

    fixed = FakeModel()
    assert run(ceding, fixed, config(threads=4)) == [4, 4, 4, 4]
    assert fixed.threads == []  # --threads was given: kept (a warning if cores are shared)


def test_prompt_logprobs_score_every_prompt_token_across_chunks_never_from_the_cache() -> None:
    """Legacy echo with logprobs: each prompt token's logprob given those before it, from
    logits of a prompt decoded in several chunks, though the prefix cache holds it."""
    fake = FakeModel()
    text = "abcdefghij" * 4  # 41 tokens with BOS: three chunks of at most 16
    params = SamplingParams(seed=1, temperature=0.0)
    plain = GenerationRequest("warm", (), params, 5, raw_prompt=text, token_ids=True)
    scored = replace(plain, request_id="scored", prompt_logprobs=2)

    async def scenario(client: EngineClient) -> tuple[Output, Output, Generation]:
        first = await complete(client, plain)
        async with client.generate(scored) as generation:
            second = Output()
            async for delta in generation.deltas():
                second.texts[delta.index] = second.texts.get(delta.index, "") + delta.text
        return first, second, generation

    first, second, generation = run(scenario, fake, config(n_batch=16))
    assert second.texts == first.texts  # scoring the prompt changes nothing generated
    assert generation.cached_tokens == 0
    scored_prompt = generation.prompt_logprobs
    assert scored_prompt is not None
    prompt = list(generation.prompt_ids)
    assert len(prompt) == 41 and scored_prompt.first_token == fake.piece(prompt[0])
    expected = [
        token_logprob(fake.rule(prompt[: p + 1]), prompt[p + 1], 2, fake.piece)
        for p in range(len(prompt) - 1)
    ]
    assert list(scored_prompt.logprobs) == expected
    assert len({item.logprob for item in expected}) > 1  # not one value throughout
