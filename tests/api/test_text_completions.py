"""POST /completions, the legacy API that LlamaIndex's OpenAILike calls by default."""

import httpx
import openai

from tests.conftest import SERVED_ALIAS


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
        ({"echo": True}, "echo"),
        ({"logprobs": 2}, "logprobs"),
        ({"suffix": "x"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
    ):
        response = http.post(
            "/v1/completions", json={"model": SERVED_ALIAS, "prompt": "Hi", **change}
        )
        assert response.status_code == 400, (change, response.text)
        assert response.json()["error"]["param"] is not None
        assert response.json()["error"]["param"].startswith(param)
