"""OpenAI's error body everywhere: `{"error": {"message", "type", "param", "code"}}`.

Every failure, including FastAPI's own validation and routing errors, goes through here, so
a client never sees FastAPI's `{"detail": ...}` shape or a traceback.
"""

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}

_CODE_BY_STATUS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "invalid_request",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
    500: "internal_error",
    503: "service_unavailable",
}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """OpenAI's error body, as /openapi.json documents it."""

    error: ErrorDetail


_DESCRIPTIONS = {
    400: "Invalid request: the message and `param` name what is wrong",
    401: "Missing, wrong or revoked API key",
    403: "The key may not use this endpoint (it needs an admin key)",
    404: "No such resource, or not the caller's",
    409: "Conflicts with the current state",
    429: "Rate limit reached; Retry-After says when to try again",
    503: "Loading, draining, at capacity or not ready; Retry-After says when to try again",
}

KEYED = (401, 429)
"""What the key dependency itself can answer on any keyed route."""
ADMIN = (401, 403, 429)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each status it really gives, in the OpenAI shape."""
    return {
        status: {"model": ErrorResponse, "description": _DESCRIPTIONS[status]}
        for status in sorted(set(statuses))
    }


class APIError(Exception):
    """An error a handler raises to answer with OpenAI's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODE_BY_STATUS.get(status, "error")
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.code, self.param)


def error_body(status: int, message: str, code: str, param: str | None) -> dict[str, Any]:
    error_type = _TYPE_BY_STATUS.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def param_path(location: Sequence[Any]) -> str | None:
    """`("body", "messages", 0, "role")` to `messages[0].role`, OpenAI's way of naming it."""
    parts = [p for p in location if p not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and not _is_union_member_label(part):
            text += f".{part}" if text else part
    return text or None


def _is_union_member_label(part: str) -> bool:
    """Pydantic names the union member it tried (`str`, `list[str]`); that is no field."""
    return part in _TYPE_LABELS or "[" in part or part.startswith(("function-", "tagged-union"))


_TYPE_LABELS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "bytes"})


def validation_error(exc: RequestValidationError) -> APIError:
    """Pydantic's first complaint, phrased the way OpenAI phrases it."""
    errors = exc.errors()
    if not errors:
        return APIError(400, "Invalid request.")
    first = errors[0]
    kind = first.get("type", "")
    param = param_path(first.get("loc", ()))
    if kind == "json_invalid":
        return APIError(
            400,
            "We could not parse the JSON body of your request. "
            f"({first.get('msg', 'invalid JSON')})",
        )
    if kind == "missing" and param:
        return APIError(400, f"Missing required parameter: '{param}'.", param=param)
    if kind == "missing":  # no body at all
        return APIError(400, "The request has no body: send a JSON object.")
    if kind == "extra_forbidden" and param:
        return APIError(400, f"Unrecognized request argument supplied: {param}", param=param)
    if param is None and kind in ("model_attributes_type", "dict_type"):
        if isinstance(first.get("input"), bytes | str):  # not read as JSON at all
            return APIError(
                400, "The request body must be JSON, sent with 'Content-Type: application/json'."
            )
        return APIError(400, "The request body must be a JSON object.")
    message = str(first.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if param:
        message = f"Invalid value for '{param}': {message}"
    return APIError(400, message, param=param)


def install_openapi_without_422(app: FastAPI) -> None:
    """FastAPI documents a 422 on every route with parameters, which this server never sends
    (validation errors are 400 in OpenAI's shape); drop it and its schemas."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through `error_body`; call it after adding the other middleware."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 404:
            message = "Unknown request URL. Please check the URL and method."
            if _is_websocket_path(app, request.scope):
                message = (
                    f"{request.url.path} is a WebSocket endpoint: connect to it with ws:// or "
                    "wss:// (as `shard scout --oracle URL` does), not with an HTTP request."
                )
        allowed = allowed_methods(app, request.scope) if exc.status_code == 405 else []
        if allowed:
            headers["Allow"] = ", ".join(allowed)
            message = f"Method {request.method} is not allowed here; use {' or '.join(allowed)}."
        return error_response(APIError(exc.status_code, message, headers=headers))

    app.add_middleware(UnexpectedErrors)  # outermost but for CORS: it sees what the rest raise


def _routed(app: FastAPI, scope: Scope, **changes: str) -> bool:
    """Whether some route takes this request with `changes` made to it (another method, or
    a WebSocket). Asked of the routes themselves, as FastAPI's included routers nest."""
    changed = {**scope, **changes}
    return any(route.matches(changed)[0] == Match.FULL for route in app.router.routes)


def _is_websocket_path(app: FastAPI, scope: Scope) -> bool:
    return _routed(app, scope, type="websocket")


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route takes at this path. Starlette's 405 names only those of the
    first route that matched it (GET /chat/completions lists, POST creates)."""
    return [method for method in _METHODS if _routed(app, scope, method=method)]


class UnexpectedErrors:
    """An unhandled exception becomes OpenAI's 500, and the connection stays open.

    Starlette's own handler for `Exception` answers and then raises again, so uvicorn closed
    the keep-alive connection and the client's next request on it was reset. Once a response
    has started (a stream) no other can be sent, so the error goes on up.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, noting_start)
        except Exception:
            if started:
                raise
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            error = APIError(500, "The server had an error processing your request.")
            await error_response(error)(scope, receive, send)
