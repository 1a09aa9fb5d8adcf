"""Keys through the real server: 401/403 rules, /keys endpoints, revocation, nothing leaks."""

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, SERVED_ALIAS, RunningOracle, auth

HELLO = [{"role": "user", "content": "Hi"}]


def create_key(http: httpx.Client, role: str = "user", name: str = "t") -> tuple[str, str]:
    response = http.post("/v1/keys", json={"name": name, "role": role})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["key"], body["id"]


def test_missing_key_is_401_unauthorized(oracle: RunningOracle) -> None:
    for path in ("/v1/models", "/models", "/v1/keys"):
        response = httpx.get(oracle.base_url + path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    response = httpx.post(
        oracle.base_url + "/v1/chat/completions", json={"model": SERVED_ALIAS, "messages": HELLO}
    )
    assert response.json()["error"]["code"] == "unauthorized"


def test_wrong_key_is_401_invalid_api_key(oracle: RunningOracle) -> None:
    wrong = "sk-oracle-" + "x" * 43
    response = httpx.get(oracle.base_url + "/v1/models", headers=auth(wrong))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert wrong not in response.text
    client = openai.OpenAI(base_url=oracle.base_url, api_key=wrong, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model=SERVED_ALIAS, messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_api_key"


def test_health_needs_no_key(oracle: RunningOracle) -> None:
    assert httpx.get(oracle.base_url + "/health").status_code == 200


def test_user_key_on_admin_endpoint_is_403(oracle: RunningOracle, http: httpx.Client) -> None:
    user_key, _ = create_key(http)
    for method, path in (("GET", "/v1/keys"), ("POST", "/keys"), ("DELETE", "/keys/key_x")):
        response = httpx.request(
            method, oracle.base_url + path, headers=auth(user_key), json={"name": "x"}
        )
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    assert httpx.get(oracle.base_url + "/v1/models", headers=auth(user_key)).status_code == 200


def test_keys_endpoints_create_list_revoke(oracle: RunningOracle, http: httpx.Client) -> None:
    key, key_id = create_key(http, name="listed")
    assert key.startswith("sk-oracle-") and len(key) >= len("sk-oracle-") + 32
    listing = http.get("/v1/keys").json()["data"]
    mine = [k for k in listing if k["id"] == key_id]
    assert mine and mine[0]["name"] == "listed" and mine[0]["role"] == "user"
    assert key not in http.get("/v1/keys").text
    assert ADMIN_KEY not in http.get("/v1/keys").text
    assert http.delete(f"/v1/keys/{key_id}").json()["revoked"] is True
    assert http.delete("/v1/keys/key_nope").status_code == 404
    bad = http.post("/v1/keys", json={"role": "superuser"})
    assert bad.status_code == 400


def test_revoked_key_is_refused_at_once(oracle: RunningOracle, http: httpx.Client) -> None:
    key, key_id = create_key(http)
    client = openai.OpenAI(base_url=oracle.base_url, api_key=key, max_retries=0)
    assert client.chat.completions.create(model=SERVED_ALIAS, messages=HELLO, max_tokens=2)  # type: ignore[arg-type]
    assert http.delete(f"/keys/{key_id}").status_code == 200
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model=SERVED_ALIAS, messages=HELLO, max_tokens=2)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_api_key"


def test_no_response_or_log_line_reveals_a_key(oracle: RunningOracle, http: httpx.Client) -> None:
    key, key_id = create_key(http)
    client = openai.OpenAI(base_url=oracle.base_url, api_key=key, max_retries=0)
    response = client.chat.completions.with_raw_response.create(
        model=SERVED_ALIAS,
        messages=HELLO,  # type: ignore[arg-type]
        max_tokens=3,
    )
    completion = response.parse()
    bodies = [
        response.http_response.text,
        httpx.get(f"{oracle.base_url}/v1/chat/completions/{completion.id}", headers=auth(key)).text,
        httpx.get(f"{oracle.base_url}/v1/chat/completions", headers=auth(key)).text,
        httpx.get(f"{oracle.base_url}/v1/models", headers=auth(key)).text,
        http.get("/v1/keys").text,
        http.delete(f"/v1/keys/{key_id}").text,
        httpx.get(f"{oracle.base_url}/v1/models", headers=auth(key)).text,
    ]
    for body in bodies:
        assert key not in body
        assert ADMIN_KEY not in body
    log = oracle.log()
    assert key not in log
    assert ADMIN_KEY not in log
    assert key[len("sk-oracle-") :][:12] not in log
