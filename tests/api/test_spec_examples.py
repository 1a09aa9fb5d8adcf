"""The spec's "Testing Compatibility" section, run unchanged with the official openai client,
in-process on a fake model: what is checked is the API's shape and defaults (the real model
answers the same client in test_chat_completions.py)."""

from collections.abc import Iterator

import openai
import pytest

from tests.conftest import SERVED_ALIAS
from tests.fake_model import END_OF_TURN, EOS
from tests.in_process import in_process_oracle, openai_client


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    with in_process_oracle(tmp_path_factory.mktemp("spec")) as http:
        yield openai_client(http)


def test_simple_chat(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=SERVED_ALIAS, messages=[{"role": "user", "content": "Hello!"}]
    )
    choice = response.choices[0]
    assert response.object == "chat.completion"
    assert response.id.startswith("chatcmpl-")
    assert response.model == SERVED_ALIAS
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert response.usage is not None
    assert 0 < response.usage.completion_tokens <= 500  # the spec's default max_tokens
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )


def test_role_based_chat(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[
            {"role": "user", "content": "Tell me a joke."},
            {"role": "assistant", "content": "Why did the chicken cross the road?"},
            {"role": "user", "content": "To get to the other side."},
        ],
    )
    assert response.choices[0].message.content
    single = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[{"role": "user", "content": "To get to the other side."}],
        max_tokens=1,
    )
    assert response.usage is not None and single.usage is not None
    assert response.usage.prompt_tokens > single.usage.prompt_tokens + 10


def test_with_parameters(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[{"role": "user", "content": "What is 2+2?"}],
        temperature=0.9,
        max_tokens=50,
    )
    assert response.usage is not None
    assert response.usage.completion_tokens <= 50
    assert response.choices[0].finish_reason in ("stop", "length")
    assert response.choices[0].message.content
    never_ends = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[{"role": "user", "content": "What is 2+2?"}],
        temperature=0.9,
        max_tokens=50,
        logit_bias={str(EOS): -100, str(END_OF_TURN): -100},  # no end: it runs to the cap
    )
    assert never_ends.choices[0].finish_reason == "length"
    assert never_ends.usage is not None and never_ends.usage.completion_tokens == 50


def test_multiple_choices(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[{"role": "user", "content": "Give me 3 names."}],
        n=3,
        temperature=1.2,
        max_tokens=40,
    )
    assert [c.index for c in response.choices] == [0, 1, 2]
    texts = [c.message.content for c in response.choices]
    assert all(texts)
    assert len(set(texts)) > 1, "choices sample independently"
    assert response.usage is not None
    assert response.usage.completion_tokens <= 3 * 40
    assert response.usage.completion_tokens >= 3
