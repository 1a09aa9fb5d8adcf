"""POST /completions, the legacy API that LlamaIndex's OpenAILike calls by default."""

from pathlib import Path

import httpx
import openai
from langchain_core.language_models import LanguageModelInput
from langchain_openai import OpenAI
from llama_cpp import Llama

from shard.default_model import default_model_path
from tests.conftest import SERVED_ALIAS, TEST_KEY, RunningOracle
from tests.in_process import in_process_oracle


def test_legacy_completion_continues_the_prompt(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model=SERVED_ALIAS, prompt="The capital of France is", temperature=0
    )
    assert response.object == "text_completion"
    assert response.id.startswith("cmpl-")
    assert response.choices[0].text
    assert response.usage is not None
    assert response.usage.completion_tokens == 16  # OpenAI's legacy default max_tokens
    assert response.choices[0].finish_reason == "length"
    again = client.completions.create(
        model=SERVED_ALIAS, prompt=["The capital of France is"], temperature=0, max_tokens=16
    )
    assert again.choices[0].text == response.choices[0].text


def test_legacy_streaming_matches_and_ends_with_done(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    plain = client.completions.create(
        model=SERVED_ALIAS, prompt="Once upon a time", temperature=0, max_tokens=12
    )
    chunks = list(
        client.completions.create(
            model=SERVED_ALIAS,
            prompt="Once upon a time",
            temperature=0,
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    body = {"model": SERVED_ALIAS, "prompt": "Hi", "max_tokens": 2, "stream": True}
    with http.stream("POST", "/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"


def test_legacy_refuses_what_it_cannot_do(http: httpx.Client) -> None:
    for change, param in (
        ({"logprobs": 21}, "logprobs"),
        ({"logprobs": -1}, "logprobs"),
        ({"logprobs": True}, "logprobs"),
        ({"echo": "yes"}, "echo"),
        ({"suffix": "x"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"prompt": []}, "prompt"),
        ({"prompt": ["a"] * 65}, "prompt"),
        ({"prompt": ["a", "b"], "n": 65}, "prompt"),
        ({"prompt": [[]]}, "prompt"),
        ({"prompt": [2, -1]}, "prompt"),
        ({"prompt": [2, 10**9]}, "prompt"),  # the engine's check: outside the vocabulary
        ({"prompt": ["a", 1]}, "prompt"),
    ):
        response = http.post(
            "/v1/completions", json={"model": SERVED_ALIAS, "prompt": "Hi", **change}
        )
        assert response.status_code == 400, (change, response.text)
        assert response.json()["error"]["param"] is not None
        assert response.json()["error"]["param"].startswith(param)


PROMPTS = ["The capital of France is", "Once upon a time", "1, 2, 3,"]


def test_a_prompt_of_token_ids_is_continued_as_its_text_is(client: openai.OpenAI) -> None:
    """lm-evaluation-harness tokenizes prompts itself by default and sends the ids."""
    vocabulary = Llama(str(default_model_path()), vocab_only=True, verbose=False)
    texts = PROMPTS[:2]
    ids = [vocabulary.tokenize(text.encode(), add_bos=True) for text in texts]
    as_text = client.completions.create(
        model=SERVED_ALIAS, prompt=texts, temperature=0, max_tokens=8
    )
    as_ids = client.completions.create(
        model=SERVED_ALIAS, prompt=ids, temperature=0, max_tokens=8, echo=True
    )
    assert as_ids.usage is not None and as_text.usage is not None
    assert as_ids.usage.prompt_tokens == as_text.usage.prompt_tokens == sum(map(len, ids))
    for text, by_text, by_ids in zip(texts, as_text.choices, as_ids.choices, strict=True):
        assert by_ids.text == text + by_text.text  # echo: the ids' text, then the same answer
    one = client.completions.create(model=SERVED_ALIAS, prompt=ids[0], temperature=0, max_tokens=8)
    assert one.choices[0].text == as_text.choices[0].text


def test_logprobs_come_in_the_legacy_shape_with_offsets_from_the_prompt(
    client: openai.OpenAI,
) -> None:
    prompt = "The capital of France is"
    response = client.completions.create(
        model=SERVED_ALIAS, prompt=prompt, temperature=0, max_tokens=6, logprobs=3
    )
    choice = response.choices[0]
    logprobs = choice.logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.text_offset
    assert logprobs.token_logprobs and logprobs.top_logprobs
    assert "".join(logprobs.tokens) == choice.text
    assert len(logprobs.tokens) == 6 == len(logprobs.token_logprobs) == len(logprobs.top_logprobs)
    offsets = [len(prompt) + len("".join(logprobs.tokens[:i])) for i in range(6)]
    assert logprobs.text_offset == offsets  # counted from the prompt's start, as OpenAI does
    for token, logprob, top in zip(
        logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs, strict=True
    ):
        assert logprob is not None and logprob <= 0
        assert top is not None and top[token] == logprob  # the sampled token is always there
        assert 3 <= len(top) <= 4
        assert max(top, key=top.__getitem__) == token  # greedy: the likeliest
    streamed = client.completions.create(
        model=SERVED_ALIAS, prompt=prompt, temperature=0, max_tokens=6, logprobs=3, stream=True
    )
    tokens: list[str] = []
    offsets_streamed: list[int] = []
    for chunk in streamed:
        for part in chunk.choices:
            if part.logprobs is not None:
                tokens += part.logprobs.tokens or []
                offsets_streamed += part.logprobs.text_offset or []
    assert (tokens, offsets_streamed) == (logprobs.tokens, logprobs.text_offset)


def test_echo_with_logprobs_scores_the_prompt_as_decoding_would(client: openai.OpenAI) -> None:
    """lm-evaluation-harness scores a continuation so: echo, logprobs, one new token. A
    prompt token's logprob must be the one the model gave it when it generated it."""
    prompt = "The capital of France is"
    generated = client.completions.create(
        model=SERVED_ALIAS, prompt=prompt, temperature=0, max_tokens=4, logprobs=1
    )
    continued = prompt + generated.choices[0].text
    scored = client.completions.create(
        model=SERVED_ALIAS, prompt=continued, temperature=0, max_tokens=1, logprobs=1, echo=True
    )
    choice = scored.choices[0]
    assert choice.text.startswith(continued)
    assert choice.logprobs is not None and choice.logprobs.token_logprobs is not None
    assert choice.logprobs.tokens is not None and choice.logprobs.top_logprobs is not None
    assert choice.logprobs.token_logprobs[0] is None  # the first token has nothing before it
    assert choice.logprobs.top_logprobs[0] is None
    assert scored.usage is not None
    assert len(choice.logprobs.tokens) == scored.usage.prompt_tokens + 1
    assert generated.choices[0].logprobs is not None
    expected = generated.choices[0].logprobs.token_logprobs
    assert expected is not None
    assert choice.logprobs.token_logprobs[-5:-1] == expected  # bit for bit, prefill or not
    assert choice.logprobs.text_offset is not None and choice.logprobs.text_offset[0] == 0
    assert "".join(choice.logprobs.tokens) == choice.text
    plain = client.completions.create(
        model=SERVED_ALIAS, prompt=continued, temperature=0, max_tokens=1
    )
    assert choice.text == continued + plain.choices[0].text
    streamed = client.completions.create(
        model=SERVED_ALIAS, prompt=[prompt, continued], temperature=0, max_tokens=3, echo=True,
        stream=True, n=2,
    )  # fmt: skip
    texts = [""] * 4
    for chunk in streamed:
        for part in chunk.choices:
            texts[part.index] += part.text
    assert all(texts[i].startswith(prompt) for i in (0, 1))
    assert all(texts[i].startswith(continued) for i in (2, 3))
    assert texts[0] == texts[1] and texts[2] == texts[3]


def test_a_list_of_prompts_answers_each_indexed_prompt_by_prompt(client: openai.OpenAI) -> None:
    """As OpenAI: choice index = prompt number * n + choice; usage summed over prompts."""
    alone = [
        client.completions.create(model=SERVED_ALIAS, prompt=p, temperature=0, max_tokens=8)
        for p in PROMPTS
    ]
    together = client.completions.create(
        model=SERVED_ALIAS, prompt=PROMPTS, temperature=0, max_tokens=8, n=2
    )
    assert [c.index for c in together.choices] == list(range(6))
    for number, single in enumerate(alone):
        for choice in together.choices[number * 2 : number * 2 + 2]:
            assert choice.text == single.choices[0].text, (number, choice)
    assert together.usage is not None
    assert together.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone if a.usage)
    assert together.usage.completion_tokens == 6 * 8
    streamed = client.completions.create(
        model=SERVED_ALIAS, prompt=PROMPTS, temperature=0, max_tokens=8, stream=True
    )
    texts = ["", "", ""]
    for chunk in streamed:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    assert texts == [a.choices[0].text for a in alone]


def test_langchain_batch_sends_a_list_of_prompts(oracle: RunningOracle) -> None:
    llm = OpenAI(
        model=SERVED_ALIAS,
        base_url=f"{oracle.base_url}/v1",
        api_key=TEST_KEY,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=6,
        max_retries=0,
    )
    answers = llm.batch(list[LanguageModelInput](PROMPTS[:2]))
    assert len(answers) == 2 and all(isinstance(answer, str) for answer in answers)
    assert answers[0] == llm.invoke(PROMPTS[0])


def test_one_refused_prompt_refuses_the_list_and_frees_the_others(http: httpx.Client) -> None:
    too_long = "word " * 40000
    body = {"model": SERVED_ALIAS, "prompt": ["Hi", too_long, "Hello"], "max_tokens": 4}
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 400, response.text
    assert "context" in response.json()["error"]["message"]
    assert http.get("/system/status").json()["load"]["requests_in_flight"] == 0
    body["prompt"] = ["Hi", "Hello"]
    after = http.post("/v1/completions", json=body).json()
    assert [choice["index"] for choice in after["choices"]] == [0, 1]


def test_prompts_past_capacity_are_a_503_with_none_left_running(tmp_path: Path) -> None:
    with in_process_oracle(tmp_path, parallel=2, max_queue=1) as http:  # capacity 3
        body = {"model": SERVED_ALIAS, "prompt": ["a", "b", "c", "d"], "max_tokens": 2}
        refused = http.post("/v1/completions", json=body)
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert http.get("/system/status").json()["load"]["requests_in_flight"] == 0
        body["prompt"] = ["a", "b", "c"]
        answered = http.post("/v1/completions", json=body)
        assert answered.status_code == 200, answered.text
        assert [choice["index"] for choice in answered.json()["choices"]] == [0, 1, 2]
