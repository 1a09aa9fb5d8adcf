"""Per-key rate limits with the spec's default (chat 10/min), in-process on a fake model: the
limits are the HTTP layer's (Redis-backed limits shared by two real oracles are proven in
tests/test_scale_out.py)."""

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from starlette.testclient import TestClient

from tests.conftest import ADMIN_KEY, SERVED_ALIAS, auth
from tests.in_process import in_process_oracle

HELLO = {"model": SERVED_ALIAS, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    limits = {"rate_limit_chat": "10/minute", "rate_limit_system": "100/minute"}
    with in_process_oracle(tmp_path_factory.mktemp("limits"), **limits) as client:
        yield client


def new_user_key(http: TestClient) -> dict[str, str]:
    response = http.post("/keys", json={"name": "limited"})
    assert response.status_code == 201
    return auth(str(response.json()["key"]))


def test_eleventh_chat_request_in_a_minute_is_429(http: TestClient) -> None:
    key, other = new_user_key(http), new_user_key(http)
    for expected_remaining in range(9, -1, -1):
        response = http.post("/v1/chat/completions", json=HELLO, headers=key)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit"] == "10"
        assert response.headers["x-ratelimit-remaining"] == str(expected_remaining)
        assert int(response.headers["x-ratelimit-reset"]) > 0
    refused = http.post("/v1/chat/completions", json=HELLO, headers=key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["x-ratelimit-limit"] == "10"
    unaffected = http.post("/v1/chat/completions", json=HELLO, headers=other)
    assert unaffected.status_code == 200
    assert unaffected.headers["x-ratelimit-remaining"] == "9"


def test_categories_are_counted_apart(http: TestClient) -> None:
    key = new_user_key(http)
    models = http.get("/v1/models", headers=key)
    assert models.headers["x-ratelimit-limit"] == "100"
    chat = http.post("/v1/chat/completions", json=HELLO, headers=key)
    assert chat.headers["x-ratelimit-limit"] == "10"
    assert chat.headers["x-ratelimit-remaining"] == "9"


def test_streamed_responses_carry_the_headers(http: TestClient) -> None:
    key = new_user_key(http)
    with http.stream(
        "POST", "/v1/chat/completions", json={**HELLO, "stream": True}, headers=key
    ) as response:
        assert response.headers["x-ratelimit-limit"] == "10"
        assert response.headers["x-ratelimit-remaining"] == "9"
        assert list(response.iter_lines())


def test_openai_client_retry_succeeds_once_the_window_allows(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    limits = {"rate_limit_chat": "2/2second"}
    with in_process_oracle(tmp_path_factory.mktemp("retry"), **limits) as http:
        statuses: list[int] = []

        def record(response: Any) -> None:
            statuses.append(response.status_code)

        http.event_hooks["response"].append(record)
        client = openai.OpenAI(
            base_url=str(http.base_url),
            api_key=ADMIN_KEY,
            max_retries=3,
            http_client=http,
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


def test_unlimited_categories_send_no_headers(tmp_path_factory: pytest.TempPathFactory) -> None:
    with in_process_oracle(tmp_path_factory.mktemp("off"), rate_limit_chat="off") as http:
        response = http.post("/v1/chat/completions", json=HELLO)
        assert response.status_code == 200
        assert "x-ratelimit-limit" not in response.headers


def scout_join(http: TestClient, key: dict[str, str], scout_id: str | None = None) -> int:
    """Join as a scout: with a `scout_id`, a hello the oracle welcomes (then leave); without,
    a frame that is not a hello. The close code, or 0 for a welcome; a refusal's reason must
    say why."""
    status = http.get("/system/status").json()
    hello = {"type": "hello", "version": 2, "scout_id": scout_id or "x"}
    hello["tokenizer"] = status["model"]["tokenizer_fingerprint"]
    with http.websocket_connect("/scouts/connect", headers=key) as websocket:
        websocket.send_text(json.dumps(hello) if scout_id else "{}")
        answer = websocket.receive()
    if answer["type"] == "websocket.send":
        assert json.loads(answer["text"])["type"] == "welcome"
        return 0
    assert answer["type"] == "websocket.close"
    if answer["code"] == 1013:
        reason = str(answer.get("reason") or "")
        assert "Rate limit reached for scout_connect" in reason and "Retry after" in reason
    return int(answer["code"])


def test_scout_connects_have_their_own_limit(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Past its connects a key's scout is told to try again (1013) before the hub reads a
    frame, so made-up scout ids cost the store nothing; REST calls are counted apart."""
    limits = {"rate_limit_scout_connects": "2/minute", "rate_limit_scouts": "100/minute"}
    with in_process_oracle(tmp_path_factory.mktemp("connects"), **limits) as http:
        key, other = new_user_key(http), new_user_key(http)
        trust = http.app.state.oracle.hub.trust  # type: ignore[attr-defined]
        assert http.get("/scouts", headers=key).headers["x-ratelimit-limit"] == "100"
        assert scout_join(http, key, "admitted") == 0
        assert scout_join(http, key) == 4008  # admitted: the hub refused the frame
        assert scout_join(http, key, "made-up") == 1013
        assert trust.owner_of("admitted") is not None  # a welcomed id is in the store
        assert trust.owner_of("made-up") is None  # a refused one is not
        assert scout_join(http, other) == 4008
        assert http.get("/scouts", headers=key).status_code == 200
