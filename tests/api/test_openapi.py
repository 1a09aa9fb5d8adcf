"""/openapi.json documents the errors each route really gives, in OpenAI's shape, and no 422
(validation errors are 400 here)."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.in_process import in_process_oracle


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with in_process_oracle(tmp_path_factory.mktemp("openapi")) as http:
        yield http.get("/openapi.json").json()


def responses(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = schema["paths"][path][method]["responses"]
    return found


def test_no_route_documents_a_422(schema: dict[str, Any]) -> None:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], f"{method} {path}"
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_error_responses_use_the_openai_shape(schema: dict[str, Any]) -> None:
    chat = responses(schema, "post", "/v1/chat/completions")
    assert {"400", "401", "404", "429", "503"} <= set(chat)
    reference = chat["400"]["content"]["application/json"]["schema"]["$ref"]
    error = schema["components"]["schemas"][reference.rsplit("/", 1)[1]]
    assert set(error["properties"]) == {"error"}
    assert {"403"} <= set(responses(schema, "post", "/keys"))
    assert {"404"} <= set(responses(schema, "delete", "/chat/completions/{completion_id}"))


def test_every_keyed_route_documents_401_and_429(schema: dict[str, Any]) -> None:
    open_routes = {"/health", "/v1/health", "/metrics", "/v1/metrics"}
    for path, operations in schema["paths"].items():
        if path in open_routes:
            continue
        for method, operation in operations.items():
            assert {"401", "429"} <= set(operation["responses"]), f"{method} {path}"


def test_documented_errors_match_what_is_answered(tmp_path_factory: pytest.TempPathFactory) -> None:
    with in_process_oracle(tmp_path_factory.mktemp("openapi-live")) as http:
        assert http.get("/v1/models", headers={"Authorization": ""}).status_code == 401
        assert http.post("/v1/chat/completions", json={}).status_code == 400
