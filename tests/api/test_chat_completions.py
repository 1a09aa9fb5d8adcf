"""Chat completions through the openai client and plain HTTP: streaming, stop, seeds, params."""

import json
import time
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import SERVED_ALIAS, TEST_KEY, RunningOracle, auth

GREEDY_PROMPT: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Write a short poem about the sea."}
]


def greedy(client: openai.OpenAI, max_tokens: int = 24, **extra: object) -> str:
    response = client.chat.completions.create(  # type: ignore[call-overload]
        model=SERVED_ALIAS,
        messages=GREEDY_PROMPT,
        temperature=0,
        max_tokens=max_tokens,
        **extra,
    )
    return response.choices[0].message.content or ""


def test_every_path_is_served_bare_and_under_v1(oracle: RunningOracle) -> None:
    bare = oracle.client(max_retries=0)
    v1 = openai.OpenAI(base_url=f"{oracle.base_url}/v1", api_key=TEST_KEY, max_retries=0)
    assert greedy(bare, 8) == greedy(v1, 8)
    for path in ("/models", "/v1/models", "/health", "/v1/health"):
        assert httpx.get(oracle.base_url + path, headers=auth(TEST_KEY)).status_code == 200


def test_models_lists_gguf_name_and_alias(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    assert ids == ["gemma-3-270m-q4_k_m", SERVED_ALIAS]
    card = client.models.retrieve(SERVED_ALIAS)
    assert card.id == SERVED_ALIAS and card.owned_by == "shard"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4")
    assert caught.value.code == "model_not_found"


def test_health_reports_healthy_with_version(http: httpx.Client) -> None:
    body = http.get("/health").json()
    assert body["status"] == "healthy"
    assert body["version"]
    assert isinstance(body["timestamp"], int) and abs(body["timestamp"] - time.time()) < 60


def test_greedy_is_deterministic_and_gguf_name_works(client: openai.OpenAI) -> None:
    first = greedy(client)
    assert first
    assert greedy(client) == first
    by_file_name = client.chat.completions.create(
        model="gemma-3-270m-q4_k_m",
        messages=GREEDY_PROMPT,
        temperature=0,
        max_tokens=24,
    )
    assert by_file_name.choices[0].message.content == first


def test_streaming_matches_non_streaming_in_openai_chunk_format(client: openai.OpenAI) -> None:
    expected = greedy(client, 30)
    stream = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=GREEDY_PROMPT,
        temperature=0,
        max_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 3, "text arrives incrementally"
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1
    assert finishing[0].choices[0].finish_reason == "length"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == 30
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected


def test_raw_sse_ends_with_done(http: httpx.Client) -> None:
    body = {
        "model": SERVED_ALIAS,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 5,
        "stream": True,
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2].removeprefix("data: "))
    assert last["choices"][0]["finish_reason"] == "length"
    assert last["choices"][0]["delta"] == {}
    assert "usage" not in last or last["usage"] is None


def test_stop_sequence_cuts_output_and_reports_stop(client: openai.OpenAI) -> None:
    full = greedy(client, 60)
    words = full.split()
    assert len(words) > 4
    stop_word = words[3]
    cut = greedy(client, 60, stop=[stop_word, "zzz-never"])
    assert cut == full[: full.index(stop_word)]
    response = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=GREEDY_PROMPT,
        temperature=0,
        max_tokens=60,
        stop=stop_word,
    )
    assert response.choices[0].finish_reason == "stop"
    assert stop_word not in (response.choices[0].message.content or "")
    streamed = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=GREEDY_PROMPT,
        temperature=0,
        max_tokens=60,
        stop=stop_word,
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == cut


def test_seed_reproduces_sampled_output(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str:
        response = client.chat.completions.create(
            model=SERVED_ALIAS,
            messages=[{"role": "user", "content": "Invent a name for a cat."}],
            temperature=1.0,
            max_tokens=24,
            seed=seed,
        )
        return response.choices[0].message.content or ""

    assert sample(7) == sample(7)
    assert len({sample(seed) for seed in (1, 2, 3, 4)}) > 1


def test_n_choices_with_seed_are_reproducible_and_distinct(client: openai.OpenAI) -> None:
    def run() -> list[str]:
        response = client.chat.completions.create(
            model=SERVED_ALIAS,
            messages=[{"role": "user", "content": "Name a color."}],
            temperature=1.0,
            max_tokens=12,
            n=3,
            seed=11,
        )
        return [c.message.content or "" for c in response.choices]

    first = run()
    assert run() == first
    assert len(set(first)) > 1


def test_max_completion_tokens_and_finish_length(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=GREEDY_PROMPT,
        temperature=0,
        max_completion_tokens=7,
    )
    assert response.usage is not None and response.usage.completion_tokens == 7
    assert response.choices[0].finish_reason == "length"


def test_eos_gives_finish_stop(client: openai.OpenAI) -> None:
    """Forcing the end-of-turn token makes generation end at once with finish_reason stop."""
    response = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=GREEDY_PROMPT,
        temperature=0,
        max_tokens=20,
        logit_bias={"106": 100},  # <end_of_turn> in Gemma's vocabulary
    )
    assert response.choices[0].finish_reason == "stop"
    assert response.choices[0].message.content == ""
    assert response.usage is not None and response.usage.completion_tokens == 1


def test_logit_bias_forces_tokens(client: openai.OpenAI) -> None:
    forced = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=GREEDY_PROMPT,
        temperature=0,
        max_tokens=4,
        logit_bias={"3689": 100},  # "What" in Gemma's vocabulary
    )
    assert forced.choices[0].message.content == "What" * 4
    # banning is proven on literal logits: tests/engine/test_worker.py


def test_logprobs_and_top_logprobs(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=GREEDY_PROMPT,
        temperature=0,
        max_tokens=5,
        logprobs=True,
        top_logprobs=3,
    )
    logprobs = response.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert len(logprobs.content) == 5
    assert "".join(item.token for item in logprobs.content) == response.choices[0].message.content
    for item in logprobs.content:
        assert item.logprob <= 0
        assert len(item.top_logprobs) == 3
        assert item.top_logprobs[0].token == item.token  # greedy picks the likeliest
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob)
        values = [top.logprob for top in item.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert bytes(item.bytes or []) == item.token.encode()
    without = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=GREEDY_PROMPT,
        temperature=0,
        max_tokens=5,
    )
    assert without.choices[0].logprobs is None


def test_logprobs_end_where_a_stop_string_cuts_the_content(client: openai.OpenAI) -> None:
    """As OpenAI: no logprob for a token the stop string holds or follows, streamed or not."""
    options: dict[str, Any] = {
        "model": SERVED_ALIAS,
        "messages": GREEDY_PROMPT,
        "temperature": 0,
        "max_tokens": 8,
        "logprobs": True,
    }
    free = client.chat.completions.create(**options)
    assert free.choices[0].logprobs is not None and free.choices[0].logprobs.content
    tokens = [item.token for item in free.choices[0].logprobs.content]
    assert len(tokens) == 8
    stop = "".join(tokens[3:5])  # begins exactly where the fourth token does
    kept = "".join(tokens[:3])
    assert stop.strip() and stop not in kept
    cut = client.chat.completions.create(**options, stop=[stop])
    assert cut.choices[0].message.content == kept
    assert cut.choices[0].logprobs is not None and cut.choices[0].logprobs.content is not None
    assert [item.token for item in cut.choices[0].logprobs.content] == tokens[:3]
    streamed = [
        item.token
        for chunk in client.chat.completions.create(**options, stop=[stop], stream=True)
        for choice in chunk.choices
        if choice.logprobs is not None and choice.logprobs.content
        for item in choice.logprobs.content
    ]
    assert streamed == tokens[:3]


def test_penalties_change_greedy_output(client: openai.OpenAI) -> None:
    prompt = [{"role": "user", "content": "Repeat the word 'hello' many times."}]
    plain = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=prompt,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=40,
    )
    penalised = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=prompt,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=40,
        frequency_penalty=2.0,
        presence_penalty=2.0,
    )
    assert plain.choices[0].message.content != penalised.choices[0].message.content


def test_top_p_zero_is_greedy(client: openai.OpenAI) -> None:
    assert greedy(client, 16) == (
        client.chat.completions.create(
            model=SERVED_ALIAS,
            messages=GREEDY_PROMPT,
            temperature=1.5,
            top_p=0.0,
            max_tokens=16,
            seed=3,
        )
        .choices[0]
        .message.content
    )


def test_content_parts_developer_role_and_system(client: openai.OpenAI) -> None:
    as_parts = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[
            {"role": "developer", "content": "Answer briefly."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}],
            },
        ],
        temperature=0,
        max_tokens=12,
    )
    as_text = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is 2+2?"},
        ],
        temperature=0,
        max_tokens=12,
    )
    assert as_parts.choices[0].message.content == as_text.choices[0].message.content
    assert as_parts.usage is not None and as_text.usage is not None
    assert as_parts.usage.prompt_tokens == as_text.usage.prompt_tokens
    assert as_parts.usage.completion_tokens == as_text.usage.completion_tokens
    details = as_text.usage.prompt_tokens_details
    assert details is not None  # the same prompt again: all but its last token were cached
    assert details.cached_tokens == as_text.usage.prompt_tokens - 1
