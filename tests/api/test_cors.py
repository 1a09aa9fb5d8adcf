"""CORS: a web page on an allowed origin may call the API with its key (vLLM's default allows
every origin, as here); the preflight answers, and refusals carry the headers too, so the page
can read them."""

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.conftest import SERVED_ALIAS
from tests.in_process import in_process_oracle

PAGE = "https://chat.example"
HELLO = {"model": SERVED_ALIAS, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
PREFLIGHT = {
    "Origin": PAGE,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with in_process_oracle(tmp_path_factory.mktemp("cors")) as client:
        yield client


def test_a_preflight_is_answered(http: TestClient) -> None:
    response = http.options("/v1/chat/completions", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


def test_answers_expose_the_rate_limit_headers(http: TestClient) -> None:
    response = http.post("/v1/chat/completions", json=HELLO, headers={"Origin": PAGE})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "x-ratelimit-remaining" in exposed and "retry-after" in exposed


def test_a_refusal_carries_the_headers(http: TestClient) -> None:
    response = http.get("/v1/models", headers={"Origin": PAGE, "Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == "*"


def test_only_the_origins_given_are_allowed(tmp_path_factory: pytest.TempPathFactory) -> None:
    with in_process_oracle(tmp_path_factory.mktemp("some"), allowed_origins=PAGE) as http:
        allowed = http.options("/v1/chat/completions", headers=PREFLIGHT)
        assert allowed.headers["access-control-allow-origin"] == PAGE
        other = {**PREFLIGHT, "Origin": "https://elsewhere.example"}
        assert http.options("/v1/chat/completions", headers=other).status_code == 400
        answer = http.get("/v1/models", headers={"Origin": "https://elsewhere.example"})
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers


def test_no_origins_turns_cors_off(tmp_path_factory: pytest.TempPathFactory) -> None:
    with in_process_oracle(tmp_path_factory.mktemp("none"), allowed_origins="") as http:
        answer = http.get("/v1/models", headers={"Origin": PAGE})
        assert "access-control-allow-origin" not in answer.headers
        assert http.options("/v1/chat/completions", headers=PREFLIGHT).status_code == 405


def test_an_unexpected_500_carries_the_headers(
    http: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CORS is outside the middleware that turns a bug into a 500, so the page reads it."""

    def broken(token: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(http.app.state.oracle.keys, "authenticate", broken)  # type: ignore[attr-defined]
    response = http.get("/v1/models", headers={"Origin": PAGE})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers["access-control-allow-origin"] == "*"
