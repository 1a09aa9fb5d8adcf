"""Per-key rate limits through the real server, with the spec's default (chat 10/min)."""

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, SERVED_ALIAS, RunningOracle, auth, start_oracle, stop_oracle

HELLO = {"model": SERVED_ALIAS, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}


@pytest.fixture(scope="module")
def default_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOracle]:
    running = start_oracle(
        tmp_path_factory.mktemp("limits"),
        "--served-model-name",
        SERVED_ALIAS,
        env={"SHARD_RATE_LIMIT_CHAT": "10/minute", "SHARD_RATE_LIMIT_SYSTEM": "100/minute"},
    )
    yield running
    stop_oracle(running)


def new_user_key(oracle: RunningOracle) -> str:
    response = httpx.post(
        oracle.base_url + "/keys", json={"name": "limited"}, headers=auth(ADMIN_KEY)
    )
    assert response.status_code == 201
    return str(response.json()["key"])


def test_eleventh_chat_request_in_a_minute_is_429(default_limits: RunningOracle) -> None:
    key = new_user_key(default_limits)
    other = new_user_key(default_limits)
    with httpx.Client(base_url=default_limits.base_url, headers=auth(key), timeout=60) as http:
        for expected_remaining in range(9, -1, -1):
            response = http.post("/v1/chat/completions", json=HELLO)
            assert response.status_code == 200
            assert response.headers["x-ratelimit-limit"] == "10"
            assert response.headers["x-ratelimit-remaining"] == str(expected_remaining)
            assert int(response.headers["x-ratelimit-reset"]) > 0
        refused = http.post("/v1/chat/completions", json=HELLO)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["x-ratelimit-limit"] == "10"
    unaffected = httpx.post(
        default_limits.base_url + "/v1/chat/completions", json=HELLO, headers=auth(other)
    )
    assert unaffected.status_code == 200
    assert unaffected.headers["x-ratelimit-remaining"] == "9"


def test_categories_are_counted_apart(default_limits: RunningOracle) -> None:
    key = new_user_key(default_limits)
    models = httpx.get(default_limits.base_url + "/v1/models", headers=auth(key))
    assert models.headers["x-ratelimit-limit"] == "100"
    chat = httpx.post(
        default_limits.base_url + "/v1/chat/completions", json=HELLO, headers=auth(key)
    )
    assert chat.headers["x-ratelimit-limit"] == "10"
    assert chat.headers["x-ratelimit-remaining"] == "9"


def test_streamed_responses_carry_the_headers(default_limits: RunningOracle) -> None:
    key = new_user_key(default_limits)
    with httpx.stream(
        "POST",
        default_limits.base_url + "/v1/chat/completions",
        json={**HELLO, "stream": True},
        headers=auth(key),
    ) as response:
        assert response.headers["x-ratelimit-limit"] == "10"
        assert response.headers["x-ratelimit-remaining"] == "9"
        assert list(response.iter_lines())


def test_openai_client_retry_succeeds_once_the_window_allows(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    running = start_oracle(
        tmp_path_factory.mktemp("retry"),
        "--served-model-name",
        SERVED_ALIAS,
        env={"SHARD_RATE_LIMIT_CHAT": "2/5second"},
    )
    try:
        statuses: list[int] = []
        transport = httpx.Client(
            event_hooks={"response": [lambda response: statuses.append(response.status_code)]}
        )
        client = openai.OpenAI(
            base_url=running.base_url, api_key=ADMIN_KEY, max_retries=3, http_client=transport
        )
        calls = 0
        while 429 not in statuses and calls < 10:  # until the limit bites, however slow we are
            response = client.chat.completions.create(
                model=SERVED_ALIAS,
                messages=[{"role": "user", "content": "Hi"}],
                max_tokens=1,
            )
            assert response.choices  # every call succeeded, the refused one after its retry
            calls += 1
        assert 429 in statuses, statuses
        assert statuses[-1] == 200
        assert statuses.count(200) == calls
    finally:
        stop_oracle(running)
