"""Bearer-key authentication plus rate limiting, as one dependency per route.

`Depends(keyed("chat"))` answers 401 `unauthorized` without a key, 401 `invalid_api_key` for a
wrong or revoked one, 403 `forbidden` for a user key on an admin route, and 429 past the key's
limit; otherwise it returns the caller's key record and leaves the rate-limit headers for
`RateLimitHeaders` to add to whatever response follows.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shard.api.errors import APIError
from shard.api.oracle_state import OracleState, get_oracle
from shard.api.rate_limits import Category
from shard.store.api_keys import KeyRecord

_STATE_HEADERS = "rate_limit_headers"


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def keyed(
    category: Category, *, admin: bool = False
) -> Callable[[Request, OracleState], Awaitable[KeyRecord]]:
    """The dependency for a route in `category`; `admin` routes refuse user keys."""

    async def dependency(
        request: Request, oracle: Annotated[OracleState, Depends(get_oracle)]
    ) -> KeyRecord:
        token = bearer_token(request)
        if token is None:
            raise APIError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer sk-oracle-...'.",
                code="unauthorized",
            )
        record = await asyncio.to_thread(oracle.keys.authenticate, token)
        if record is None:
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")
        if admin and not record.is_admin:
            raise APIError(403, "This endpoint needs an admin key.", code="forbidden")
        tier = "standard"
        if category == "chat":
            tier = await asyncio.to_thread(oracle.tier_of, record.id)
        decision = await oracle.rate_limiter.hit(category, record.id, tier)
        if decision is not None:
            request.state.rate_limit_headers = decision.headers()
        return record

    return dependency


class RateLimitHeaders:
    """ASGI middleware: copies the headers `keyed` left in the request state onto the response
    (streamed ones included, which FastAPI's injected Response cannot reach)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra: dict[str, str] = scope.get("state", {}).get(_STATE_HEADERS) or {}
                if extra:
                    present = {name.lower() for name, _ in message.get("headers", [])}
                    message["headers"] = [
                        *message.get("headers", []),
                        *(
                            (name.lower().encode(), value.encode())
                            for name, value in extra.items()
                            if name.lower().encode() not in present
                        ),
                    ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
