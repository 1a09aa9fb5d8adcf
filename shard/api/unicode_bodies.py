"""JSON bodies whose strings are not Unicode text are a 400 naming the field.

JSON's `\\ud800` escape decodes to a lone UTF-16 surrogate, which Python's `json` accepts but
which no UTF-8 text can hold: tokenizing, storing or answering with it fails later, far from
the request. So do a surrogate's own three bytes (ED A0 80 and the like): not UTF-8, yet
`json.loads` decodes bytes with `surrogatepass`. The route class checks a body before
FastAPI validates it.
"""

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from shard.api.errors import APIError, param_path

_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
"""An escape or a surrogate's UTF-8-like bytes: only these put a surrogate into a parsed
body, so a body without one is not parsed twice."""

Location = tuple[str | int, ...]


def lone_surrogate_at(value: Any, at: Location = ()) -> Location | None:
    """Where the first string (or key) holding an unpaired surrogate is, if any."""
    if isinstance(value, str):
        return None if _is_text(value) else at
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (found := lone_surrogate_at(item, (*at, index))) is not None:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            if not _is_text(key):
                return (*at, key.encode("utf-8", "backslashreplace").decode())
            if (found := lone_surrogate_at(item, (*at, key))) is not None:
                return found
    return None


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class UnicodeCheckedRoute(APIRoute):
    """An `APIRoute` that refuses a JSON body with an unpaired surrogate before validation."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def checked(request: Request) -> Response:
            if request.method in ("POST", "PUT", "PATCH"):
                try:
                    body = await request.body()  # cached: FastAPI reads the same bytes after
                except ClientDisconnect:  # gone before its body arrived: nothing went wrong here
                    raise APIError(400, "The client went away while sending its body.") from None
                if _SURROGATE.search(body):
                    _refuse_lone_surrogates(body)
            return await handle(request)

        return checked


def _refuse_lone_surrogates(body: bytes) -> None:
    try:
        location = lone_surrogate_at(json.loads(body))
    except ValueError:
        return  # FastAPI reports JSON that does not parse
    except RecursionError:
        raise APIError(400, "The JSON body is nested too deeply.") from None
    if location is not None:
        param = param_path(location)
        raise APIError(
            400,
            f"Invalid value for '{param or 'body'}': the string holds an unpaired UTF-16 "
            "surrogate (a \\ud800-\\udfff escape without its pair, or its bytes), which is not "
            "Unicode text.",
            param=param,
        )
