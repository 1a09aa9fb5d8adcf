"""Bad input gets a clear 4xx in OpenAI's error shape: never a 500, never FastAPI's detail.

In-process on a fake model: what is checked here is decided before and around the model."""

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import openai
import pytest

from tests.conftest import SERVED_ALIAS
from tests.in_process import in_process_oracle, openai_client


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with in_process_oracle(tmp_path_factory.mktemp("bad-inputs")) as client:
        yield client  # type: ignore[misc]  # a TestClient is an httpx(2) client


@pytest.fixture(scope="module")
def client(http: httpx.Client) -> openai.OpenAI:
    return openai_client(http)  # type: ignore[arg-type]


GOOD: dict[str, Any] = {"model": SERVED_ALIAS, "messages": [{"role": "user", "content": "Hi"}]}


class Answer(Protocol):
    """A response of httpx or of Starlette's TestClient (which may use httpx2)."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


def assert_openai_error(response: Answer, status: int, code: str, param: str | None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, "OpenAI's shape, not FastAPI's {'detail': ...}"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert body["error"]["param"] == param
    assert body["error"]["message"]


def test_invalid_json(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions",
        content=b'{"model": "x", ',
        headers={"content-type": "application/json"},
    )
    assert_openai_error(response, 400, "invalid_request", None)


def test_body_that_is_not_an_object(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json=["not", "an", "object"])
    assert_openai_error(response, 400, "invalid_request", None)


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"max_completion_tokens": -3}, "max_completion_tokens"),
        ({"n": 0}, "n"),
        ({"presence_penalty": 2.1}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": 5}, "stop"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"logit_bias": {"hello": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias"),
        ({"logit_bias": {"²": 1}}, "logit_bias"),  # a digit to str.isdigit(), not to int()
        ({"logit_bias": {"\u0665": 1}}, "logit_bias"),  # an Arabic-Indic 5, which int() reads as 5
        ({"logit_bias": {"1" * 5000: 1}}, "logit_bias"),  # int() refuses over 4300 digits
        (
            {"messages": [{"role": "assistant", "content": "x", "function_call": {"name": "f"}}]},
            "messages[0].function_call",
        ),
        (
            {"messages": [{"role": "assistant", "content": "x", "audio": {"id": "a"}}]},
            "messages[0].audio",
        ),
        ({"stream": "yes please"}, "stream"),
        ({"seed": "abc"}, "seed"),
        # JSON types are strict, as in OpenAI's API: pydantic's lax mode took all of these
        ({"stream_options": {"include_usage": True}}, "stream_options"),  # as OpenAI refuses
        ({"stream_options": {"include_usage": True}, "stream": False}, "stream_options"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"top_logprobs": 3, "logprobs": False}, "top_logprobs"),
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"temperature": "0.5"}, "temperature"),
        ({"seed": "42"}, "seed"),
        ({"logprobs": "true"}, "logprobs"),
        (
            {"stream_options": {"include_usage": "yes"}, "stream": True},
            "stream_options.include_usage",
        ),
    ],
)
def test_wrong_types_and_out_of_range_values(
    http: httpx.Client, change: dict[str, Any], param: str
) -> None:
    response = http.post("/v1/chat/completions", json={**GOOD, **change})
    assert_openai_error(response, 400, "invalid_request", param)


def test_missing_required_fields(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": SERVED_ALIAS})
    assert_openai_error(response, 400, "invalid_request", "messages")
    response = http.post("/v1/chat/completions", json={"messages": GOOD["messages"]})
    assert_openai_error(response, 400, "invalid_request", "model")


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"web_search_options": {}}, "web_search_options"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "http://x"}}],
                    }
                ]
            },
            "messages[0].content",
        ),
        (
            {"messages": [{"role": "function", "content": "42", "name": "f"}]},
            "messages[0].role",
        ),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"best_of": 3}, "best_of"),
    ],
)
def test_unsupported_features_are_refused_by_name(
    http: httpx.Client, change: dict[str, Any], param: str
) -> None:
    response = http.post("/v1/chat/completions", json={**GOOD, **change})
    assert_openai_error(response, 400, "invalid_request", param)
    assert param.split("[")[0].split(".")[0] in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("response_format", "param", "words"),
    [
        ({"type": "xml"}, "response_format.type", "json_schema"),
        ({"type": "json_schema"}, "response_format", "needs a 'json_schema'"),
        ({"type": "json_schema", "json_schema": {}}, "response_format.json_schema.name", "name"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}},
            "response_format",
            "Invalid type: nope",
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "string", "pattern": "(("}},
            },
            "response_format",
            "unclosed group",
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "x", "strict": True, "schema": {"not": {}}},
            },
            "response_format",
            "not",
        ),
    ],
)
def test_a_response_format_that_cannot_be_enforced_is_a_400(
    http: httpx.Client, response_format: dict[str, Any], param: str, words: str
) -> None:
    response = http.post("/v1/chat/completions", json={**GOOD, "response_format": response_format})
    assert_openai_error(response, 400, "invalid_request", param)
    assert words in response.json()["error"]["message"]


def test_text_response_format_and_tool_choice_none_are_fine(http: httpx.Client) -> None:
    body = {**GOOD, "max_tokens": 2, "response_format": {"type": "text"}, "tool_choice": "none"}
    assert http.post("/v1/chat/completions", json=body).status_code == 200


def test_an_integer_where_a_number_is_wanted_is_taken(http: httpx.Client) -> None:
    """Strict types still take 1 for a float field: JSON has one number type."""
    response = http.post("/v1/chat/completions", json={**GOOD, "temperature": 1, "max_tokens": 2})
    assert response.status_code == 200, response.text


def test_stream_options_openai_sends_are_taken(http: httpx.Client) -> None:
    options = {"include_usage": True, "include_obfuscation": False}
    body = {**GOOD, "max_tokens": 2, "stream": True, "stream_options": options}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert '"usage":{' in response.text


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI, http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={**GOOD, "model": "gpt-4"})
    assert_openai_error(response, 404, "model_not_found", "model")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=GOOD["messages"])


def test_an_answer_sent_back_as_the_sdk_dumps_it_is_accepted(client: openai.OpenAI) -> None:
    """`messages.append(answer.model_dump())` carries annotations, audio and function_call,
    all null: they are what the SDK's message type has, so they are taken and not used."""
    first = client.chat.completions.create(
        model=SERVED_ALIAS, messages=GOOD["messages"], max_tokens=3
    )
    sent_back = first.choices[0].message.model_dump()
    assert {"annotations", "audio", "function_call"} <= set(sent_back)
    again = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[*GOOD["messages"], sent_back, {"role": "user", "content": "More"}],  # type: ignore[list-item]
        max_tokens=3,
    )
    assert again.choices[0].message.content is not None


def test_n_above_parallel_is_refused(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={**GOOD, "n": 9})
    assert_openai_error(response, 400, "invalid_request", "n")


def test_out_of_vocabulary_logit_bias(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={**GOOD, "logit_bias": {"99999999": 5}})
    assert_openai_error(response, 400, "invalid_request", "logit_bias")


def test_prompt_longer_than_context(http: httpx.Client, client: openai.OpenAI) -> None:
    huge = "word " * 3000
    body = {**GOOD, "messages": [{"role": "user", "content": huge}]}
    assert_openai_error(
        http.post("/v1/chat/completions", json=body), 400, "context_length_exceeded", "messages"
    )
    streamed = {**body, "stream": True}
    assert_openai_error(
        http.post("/v1/chat/completions", json=streamed), 400, "context_length_exceeded", "messages"
    )
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=SERVED_ALIAS, messages=body["messages"])
    assert caught.value.code == "context_length_exceeded"


def test_a_legacy_prompt_longer_than_context_names_the_prompt(http: httpx.Client) -> None:
    response = http.post("/v1/completions", json={"model": SERVED_ALIAS, "prompt": "w " * 3000})
    assert_openai_error(response, 400, "context_length_exceeded", "prompt")
    assert "messages" not in response.json()["error"]["message"]
    too_long = {"model": SERVED_ALIAS, "prompt": "Hi", "max_tokens": 5000}
    response = http.post("/v1/completions", json=too_long)
    assert_openai_error(response, 400, "context_length_exceeded", "prompt")


def test_explicit_max_tokens_beyond_context(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={**GOOD, "max_tokens": 5000})
    assert_openai_error(response, 400, "context_length_exceeded", "messages")


def test_default_max_tokens_shrinks_to_fit(http: httpx.Client) -> None:
    """A long prompt with the default max_tokens (500) still runs: the default shrinks."""
    long_prompt = "word " * 340  # the fake model's tokenizer makes a token of every character
    body = {**GOOD, "messages": [{"role": "user", "content": long_prompt}], "temperature": 0}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] <= 2048


def test_unknown_path_and_method(http: httpx.Client) -> None:
    assert_openai_error(http.get("/v1/nothing-here"), 404, "not_found", None)
    assert_openai_error(http.get("/v1/chat/completions/abc/def/ghi"), 404, "not_found", None)
    response = http.put("/v1/models")
    assert_openai_error(response, 405, "method_not_allowed", None)
    assert response.headers["allow"] == "GET"
    both = http.delete("/v1/chat/completions")  # two routes: GET lists, POST creates
    assert_openai_error(both, 405, "method_not_allowed", None)
    assert both.headers["allow"] == "GET, POST"
    assert "use GET or POST" in both.json()["error"]["message"]
    websocket = http.get("/scouts/connect")  # the scouts' endpoint, asked over plain HTTP
    assert_openai_error(websocket, 404, "not_found", None)
    assert "WebSocket endpoint" in websocket.json()["error"]["message"]


def post_raw(http: httpx.Client, path: str, body: str) -> httpx.Response:
    return http.post(path, content=body.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "/v1/chat/completions",
            '{"model": "%s", "messages": [{"role": "user", "content": "hi \\ud800"}]}',
            "messages[0].content",
        ),
        (
            "/v1/chat/completions",
            '{"model": "%s", "messages": [{"role": "user", "content": "hi"}],'
            ' "metadata": {"k": "\\udfff"}}',
            "metadata.k",
        ),
        (
            "/v1/chat/completions",
            '{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}',
            "model",
        ),
        (
            "/v1/chat/completions",
            '{"model": "%s", "messages": [{"role": "user", "content": "hi", "name": "\\ud83d"}]}',
            "messages[0].name",
        ),
        ("/v1/completions", '{"model": "%s", "prompt": ["ok", "\\udc00 x"]}', "prompt[1]"),
    ],
)
@pytest.mark.parametrize("written", ["escaped", "as bytes"])
def test_an_unpaired_surrogate_is_a_400_naming_the_field(
    http: httpx.Client, path: str, body: str, param: str, written: str
) -> None:
    """JSON can escape half a UTF-16 pair, which is no Unicode text: it must not reach the
    tokenizer or the store (it made a 500 there, and a stored completion that no list could
    show). Its three bytes (ED A0 80, say) are no UTF-8, yet `json.loads` decodes them."""
    text = body.replace("%s", SERVED_ALIAS)
    if written == "escaped":
        response = post_raw(http, path, text)
    else:
        raw = re.sub(r"\\u(d[89a-f][0-9a-f]{2})", lambda m: chr(int(m[1], 16)), text)
        content = raw.encode("utf-8", "surrogatepass")
        assert b"\\u" not in content
        response = http.post(path, content=content, headers={"content-type": "application/json"})
    assert_openai_error(response, 400, "invalid_request", param)
    assert "surrogate" in response.json()["error"]["message"]
    listed = http.get("/v1/chat/completions", params={"limit": 100})
    assert listed.status_code == 200, listed.text


def test_a_surrogate_in_a_body_nested_too_deeply_is_a_400(http: httpx.Client) -> None:
    """The surrogate check parses the body itself, and must not fail where FastAPI would
    answer a 400."""
    deep = "[" * 5000 + "]" * 5000
    body = f'{{"model": "m", "messages": [], "x": "\\ud800", "y": {deep}}}'
    assert post_raw(http, "/v1/chat/completions", body).status_code == 400


def test_a_legacy_prompt_of_token_ids_outside_the_vocabulary_says_so(http: httpx.Client) -> None:
    for prompt, says in (
        ([2, 10**7], "outside the vocabulary"),
        ([[2, 3], [2, -5]], "not negative"),
        ([[2, 3], []], "needs one at least"),
    ):
        response = http.post("/v1/completions", json={"model": SERVED_ALIAS, "prompt": prompt})
        assert_openai_error(response, 400, "invalid_request", "prompt")
        assert says in response.json()["error"]["message"]


def test_a_surrogate_pair_and_an_escaped_backslash_are_text(http: httpx.Client) -> None:
    """A whole pair (an emoji) is text, and so is `\\\\ud800` (a backslash, then letters)."""
    body = (
        '{"model": "%s", "max_tokens": 2, "messages":'
        ' [{"role": "user", "content": "\\ud83d\\ude00 and \\\\ud800"}]}'
    ).replace("%s", SERVED_ALIAS)
    response = post_raw(http, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text


def test_a_body_over_the_limit_is_a_413_before_it_is_read(tmp_path: Path) -> None:
    """A 100 MB body used to be read and parsed whole; the limit answers as bytes arrive."""
    with in_process_oracle(tmp_path, max_request_mb=1) as small:
        text = "x" * (2**20)
        body = {**GOOD, "messages": [{"role": "user", "content": text}]}
        response = small.post("/v1/chat/completions", json=body)
        assert_openai_error(response, 413, "invalid_request", None)
        assert "--max-request-mb" in response.json()["error"]["message"]
        chunked = small.post(  # no Content-Length: counted as it arrives
            "/v1/chat/completions",
            content=(b"x" * 2**16 for _ in range(20)),
            headers={"content-type": "application/json"},
        )
        assert "content-length" not in chunked.request.headers
        assert_openai_error(chunked, 413, "invalid_request", None)
        fits = {**GOOD, "max_tokens": 1, "messages": [{"role": "user", "content": "x" * 1000}]}
        assert small.post("/v1/chat/completions", json=fits).status_code == 200


def test_a_compressed_body_is_a_415_that_says_so(http: httpx.Client) -> None:
    """It used to be a JSON parse error, which sent the user looking at their JSON."""
    body = gzip.compress(json.dumps({**GOOD, "max_tokens": 1}).encode())
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    response = http.post("/v1/chat/completions", content=body, headers=headers)
    assert_openai_error(response, 415, "unsupported_media_type", "Content-Encoding")
    assert "gzip" in response.json()["error"]["message"]
    twice = [("content-type", "application/json"), ("content-encoding", "identity")]
    twice.append(("content-encoding", "gzip"))  # a second header counts too
    refused = http.post("/v1/chat/completions", content=body, headers=twice)
    assert_openai_error(refused, 415, "unsupported_media_type", "Content-Encoding")
    plain = {**headers, "content-encoding": "identity"}
    uncompressed = json.dumps({**GOOD, "max_tokens": 1}).encode()
    assert http.post("/v1/chat/completions", content=uncompressed, headers=plain).status_code == 200


def test_a_key_needs_no_body(http: httpx.Client) -> None:
    """Every field of POST /keys has a default, so no body is an unnamed user key, not a 400."""
    made = http.post("/keys")
    assert made.status_code == 201, made.text
    assert made.json()["role"] == "user" and made.json()["name"] == ""
    assert_openai_error(post_raw(http, "/keys", "[]"), 400, "invalid_request", None)
    assert_openai_error(post_raw(http, "/keys", '{"role": 1}'), 400, "invalid_request", "role")
    tickets = http.post("/scouts/nope/golden-tickets")  # its count has a default too
    assert_openai_error(tickets, 404, "not_found", "scout_id")


def test_the_last_admin_key_cannot_revoke_itself(tmp_path: Path) -> None:
    """Through the API nothing could make another admin key afterwards."""
    with in_process_oracle(tmp_path) as http:
        own = [key for key in http.get("/v1/keys").json()["data"] if key["role"] == "admin"]
        assert len(own) == 1
        response = http.delete(f"/v1/keys/{own[0]['id']}")
        assert_openai_error(response, 409, "last_admin_key", "key_id")
        assert http.get("/v1/keys").status_code == 200


def test_bodies_that_are_not_json_objects_say_what_is_wrong(http: httpx.Client) -> None:
    empty = http.post("/v1/chat/completions", headers={"content-type": "application/json"})
    assert_openai_error(empty, 400, "invalid_request", None)
    assert "no body" in empty.json()["error"]["message"]
    as_text = http.post(
        "/v1/chat/completions", content=b'{"model": "x"}', headers={"content-type": "text/plain"}
    )
    assert_openai_error(as_text, 400, "invalid_request", None)
    assert "Content-Type: application/json" in as_text.json()["error"]["message"]
    not_a_number = http.post(
        "/v1/chat/completions",
        content=b'{"model": "x", "messages": [], "temperature": NaN}',
        headers={"content-type": "application/json"},
    )
    assert_openai_error(not_a_number, 400, "invalid_request", "temperature")
    assert "finite" in not_a_number.json()["error"]["message"]


def test_health_answers_head_for_uptime_monitors(http: httpx.Client) -> None:
    response = http.head("/health")
    assert response.status_code == 200 and response.content == b""


def test_the_dashboard_is_at_its_bare_path_and_under_v1(http: httpx.Client) -> None:
    """As every endpoint is (the README's table); the page asks the API by absolute paths."""
    for path in ("/dashboard", "/v1/dashboard"):
        page = http.get(path)
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert 'api("/system/status")' in page.text
