"""What every route needs from the running oracle, handed out as one FastAPI dependency."""

import time
from dataclasses import dataclass, field
from datetime import timedelta

from fastapi import Request

from shard.api.errors import APIError
from shard.api.lifecycle import Lifecycle
from shard.api.metrics import OracleMetrics
from shard.api.rate_limits import RateLimiter
from shard.engine.client import EngineClient
from shard.store.api_keys import KeyStore
from shard.store.completions import CompletionStore
from shard.store.reservations import ReservationStore
from shard.store.scout_records import ContributionStore, ScoutRecordStore
from shard.swarm.hub import Hub

_TIER_CACHE_SECONDS = 2.0


@dataclass
class ScoutTier:
    """Keys whose scouts contributed `min_tokens` accepted draft tokens in the last
    `window_minutes` get the scout tier's rate limits. Looked up at most every few seconds."""

    min_tokens: int
    window_minutes: int
    _cache: dict[str, tuple[float, str]] = field(default_factory=dict)

    def tier_of(self, key_id: str, contributions: ContributionStore) -> str:
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < _TIER_CACHE_SECONDS:
            return cached[1]
        recent = contributions.recent(key_id, timedelta(minutes=self.window_minutes))
        tier = "scout" if self.min_tokens > 0 and recent >= self.min_tokens else "standard"
        self._cache[key_id] = (now, tier)
        return tier


@dataclass
class OracleState:
    """The engine, the stores and the names the served model answers to."""

    model_names: list[str]
    keys: KeyStore
    completions: CompletionStore
    reservations: ReservationStore
    scout_records: ScoutRecordStore
    contributions: ContributionStore
    rate_limiter: RateLimiter
    lifecycle: Lifecycle
    metrics: OracleMetrics
    model_path: str = ""
    metrics_require_admin: bool = False
    scout_tier: "ScoutTier | None" = None
    started: int = field(default_factory=lambda: int(time.time()))

    @property
    def engine(self) -> EngineClient | None:
        return self.lifecycle.engine

    @property
    def hub(self) -> Hub | None:
        return self.lifecycle.hub

    @property
    def draining(self) -> bool:
        return self.lifecycle.draining

    def tier_of(self, key_id: str) -> str:
        """'scout' for a key whose scouts got enough draft tokens accepted lately."""
        if self.scout_tier is None:
            return "standard"
        return self.scout_tier.tier_of(key_id, self.contributions)

    def resolve_model(self, requested: str) -> str:
        """The requested name if this server serves it; 404 model_not_found otherwise."""
        if requested in self.model_names:
            return requested
        raise APIError(
            404,
            f"The model '{requested}' does not exist. Served models: {', '.join(self.model_names)}",
            code="model_not_found",
            param="model",
        )

    def ready_engine(self) -> EngineClient:
        if self.draining:
            raise APIError(
                503, "The oracle is restarting; try again shortly.", headers={"Retry-After": "5"}
            )
        if self.engine is None or not self.engine.ready:
            raise APIError(
                503, "The model is still loading; try again shortly.", headers={"Retry-After": "5"}
            )
        return self.engine


def get_oracle(request: Request) -> OracleState:
    state: OracleState = request.app.state.oracle
    return state
