"""The largest request body the oracle reads (`--max-request-mb`), refused in OpenAI's shape.

A declared length over the limit is answered before any byte is read; a body without one
is counted as it arrives. (FastAPI's own `max_body_size` answers in plain text.) A compressed
body (`Content-Encoding: gzip`) is a 415 that says so, not a JSON parse error: decompressing
would need its own bound, and the OpenAI SDKs send bodies uncompressed.
"""

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shard.api.errors import APIError, error_response


def too_large(max_bytes: int) -> APIError:
    return APIError(
        413,
        f"The request body is larger than this server takes: {max_bytes // 2**20} MiB "
        "(--max-request-mb).",
    )


def compressed(encoding: str) -> APIError:
    return APIError(
        415,
        f"The request body is sent with 'Content-Encoding: {encoding[:32]}', which this server "
        "does not decode; send it uncompressed.",
        param="Content-Encoding",
    )


class BodyLimit:
    """ASGI middleware: a body over `max_bytes` is a 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared.isdecimal() and int(declared) > self.max_bytes:
            await error_response(too_large(self.max_bytes))(scope, receive, send)
            return
        codings = ",".join(headers.getlist("content-encoding")).split(",")
        encoded = [c.strip().lower() for c in codings if c.strip().lower() not in ("", "identity")]
        if encoded:
            await error_response(compressed(encoded[0]))(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise too_large(self.max_bytes)  # read in a route: its handler answers
            return message

        await self.app(scope, counted, send)
