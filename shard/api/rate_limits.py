"""Per-key, per-category rate limits with the `limits` library (moving window).

Counters live in memory by default, or in Redis given a URL so several oracles share them.
The async API is used, so a Redis round trip never blocks the event loop. Every keyed
response carries X-RateLimit-Limit/Remaining/Reset; a refusal is a 429 with Retry-After in
OpenAI's error shape.
"""

import math
import time
from dataclasses import dataclass
from typing import Literal

from limits import RateLimitItem, parse
from limits.aio import strategies
from limits.aio.storage import Storage
from limits.storage import storage_from_string

from shard.api.errors import APIError

Category = Literal["chat", "scouts", "scout_connect", "system", "restart"]
"""`scout_connect` counts WebSocket joins apart from `scouts` (REST), so a dashboard polling
`GET /scouts` never keeps a key's scouts from reconnecting."""


RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@dataclass(frozen=True)
class RateDecision:
    limit: int
    remaining: int
    reset_at: float

    def headers(self) -> dict[str, str]:
        values = (self.limit, self.remaining, math.ceil(self.reset_at))
        return {name: str(value) for name, value in zip(RATE_LIMIT_HEADERS, values, strict=True)}


def parse_limit(text: str) -> RateLimitItem | None:
    """'10/minute' or '10 per minute'; 'off' (or '0') disables the category."""
    if text.strip().lower() in ("off", "none", "0", ""):
        return None
    return parse(text)


def async_storage(url: str) -> Storage:
    """The async storage for a `memory://` or `redis://...` URL (redis-py's client, which the
    `redis` extra installs)."""
    async_url = url if url.startswith("async+") else f"async+{url}"
    scheme = async_url.split("://", 1)[0]
    options = {"implementation": "redispy"} if "redis" in scheme else {}
    chosen = storage_from_string(async_url, **options)
    assert isinstance(chosen, Storage)
    return chosen


class RateLimiter:
    """Checks and counts one request of a key in a category."""

    def __init__(
        self,
        storage_url: str,
        limits_by_category: dict[Category, str],
        scout_tier: dict[Category, str] | None = None,
    ) -> None:
        self._limiter = strategies.MovingWindowRateLimiter(async_storage(storage_url))
        self._items = {c: parse_limit(text) for c, text in limits_by_category.items()}
        self._scout_items = {c: parse_limit(text) for c, text in (scout_tier or {}).items()}

    async def hit(
        self, category: Category, key_id: str, tier: str = "standard"
    ) -> RateDecision | None:
        """Count the request, or raise a 429; None when the category is unlimited.

        Keys in the scout tier (their scouts contribute) get that tier's limit where one is set.
        """
        item = self._items.get(category)
        if tier == "scout" and category in self._scout_items:
            item = self._scout_items[category]
        if item is None:
            return None
        allowed = await self._limiter.hit(item, category, key_id)
        stats = await self._limiter.get_window_stats(item, category, key_id)
        decision = RateDecision(item.amount, max(stats.remaining, 0), stats.reset_time)
        if not allowed:
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise APIError(
                429,
                f"Rate limit reached for {category} requests: {item.amount} per "
                f"{item.get_expiry()} seconds. Retry after {retry_after} seconds.",
                code="rate_limit_exceeded",
                headers={**decision.headers(), "Retry-After": str(retry_after)},
            )
        return decision
