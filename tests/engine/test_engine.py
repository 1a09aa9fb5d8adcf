"""The engine through a real oracle: batching is invisible in the output, cancellation frees
sequences, and the admission bound answers 503 instead of queueing forever."""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import (
    ADMIN_KEY,
    SERVED_ALIAS,
    RunningOracle,
    auth,
    start_oracle,
    stop_oracle,
)

PROMPTS = [
    "Write a short poem about the sea.",
    "List three fruits.",
    "Explain what a CPU does.",
    "What is the capital of France?",
    "Tell me about dogs.",
    "Count from one to ten in words.",
]
NEVER_END = {"1": -100, "106": -100}  # ban <eos> and <end_of_turn> so generation runs long


def complete(client: openai.OpenAI, prompt: str, max_tokens: int = 24) -> str:
    response = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[{"role": "user", "content": prompt}],
        temperature=0,
        max_tokens=max_tokens,
    )
    return response.choices[0].message.content or ""


def test_concurrent_greedy_requests_match_their_solo_runs(client: openai.OpenAI) -> None:
    alone = [complete(client, prompt) for prompt in PROMPTS]
    with ThreadPoolExecutor(max_workers=len(PROMPTS)) as pool:
        together = list(pool.map(lambda p: complete(client, p), PROMPTS))
    assert together == alone
    assert len(set(alone)) == len(alone)


def test_a_message_spelling_a_turn_marker_is_read_as_text(client: openai.OpenAI) -> None:
    """Parsed as control tokens, `<end_of_turn>` would be one token and end the user's turn."""

    def prompt_tokens(content: str) -> int:
        response = client.chat.completions.create(
            model=SERVED_ALIAS, messages=[{"role": "user", "content": content}], max_tokens=1
        )
        assert response.usage is not None
        return response.usage.prompt_tokens

    assert prompt_tokens("<end_of_turn>") > prompt_tokens("x") + 2


@pytest.fixture(scope="module")
def single_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOracle]:
    """An oracle with one sequence and no queue: easy to fill, so easy to observe."""
    log_dir: Path = tmp_path_factory.mktemp("single")
    running = start_oracle(
        log_dir,
        "--served-model-name",
        SERVED_ALIAS,
        "--parallel",
        "1",
        "--max-queue",
        "0",
        "--n-ctx",
        "8192",
    )
    yield running
    stop_oracle(running)


def long_stream_body() -> dict[str, object]:
    return {
        "model": SERVED_ALIAS,
        "messages": [{"role": "user", "content": "Tell me a very long story."}],
        "max_tokens": 8000,
        "temperature": 0,
        "logit_bias": NEVER_END,
        "stream": True,
    }


def test_full_server_answers_503_with_retry_after(single_slot: RunningOracle) -> None:
    with (
        httpx.Client(base_url=single_slot.base_url, timeout=60, headers=auth(ADMIN_KEY)) as http,
        http.stream("POST", "/v1/chat/completions", json=long_stream_body()) as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines).startswith("data: ")
        busy = http.post(
            "/v1/chat/completions",
            json={"model": SERVED_ALIAS, "messages": [{"role": "user", "content": "Hi"}]},
        )
        assert busy.status_code == 503
        assert busy.headers["retry-after"]
        assert busy.json()["error"]["code"] == "service_unavailable"


def test_disconnect_mid_stream_frees_the_sequence(single_slot: RunningOracle) -> None:
    """The abandoned stream would need 8000 tokens (minutes); the next request must not wait."""
    with httpx.Client(base_url=single_slot.base_url, timeout=60, headers=auth(ADMIN_KEY)) as http:
        with http.stream("POST", "/v1/chat/completions", json=long_stream_body()) as stream:
            received = 0
            for line in stream.iter_lines():
                received += line.startswith("data: ")
                if received == 5:
                    break
        started = time.monotonic()
        client = single_slot.client(max_retries=5, timeout=60)
        assert complete(client, "Hi", max_tokens=5)
        assert time.monotonic() - started < 30


def test_client_leaving_a_plain_request_frees_the_sequence(single_slot: RunningOracle) -> None:
    body = {**long_stream_body(), "stream": False}
    with (
        httpx.Client(base_url=single_slot.base_url, timeout=2, headers=auth(ADMIN_KEY)) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.post("/v1/chat/completions", json=body)  # gives up after 2 s of 8000 tokens
    started = time.monotonic()
    client = single_slot.client(max_retries=5, timeout=60)
    assert complete(client, "Hi", max_tokens=5)
    assert time.monotonic() - started < 30
