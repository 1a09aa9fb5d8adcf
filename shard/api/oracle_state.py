"""What every route needs from the running oracle, handed out as one FastAPI dependency."""

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from shard.api.errors import APIError
from shard.api.metrics import OracleMetrics
from shard.api.rate_limits import RateLimiter
from shard.engine.scheduler import Scheduler
from shard.store.api_keys import KeyStore
from shard.store.completions import CompletionStore
from shard.store.reservations import ReservationStore

if TYPE_CHECKING:
    from shard.api.lifecycle import Lifecycle
    from shard.swarm.hub import Hub


@dataclass
class OracleState:
    """The scheduler, the stores and the names the served model answers to."""

    model_names: list[str]
    keys: KeyStore
    completions: CompletionStore
    reservations: ReservationStore
    rate_limiter: RateLimiter
    metrics: OracleMetrics = field(default_factory=OracleMetrics)
    model_path: str = ""
    metrics_require_admin: bool = False
    scheduler: Scheduler | None = None
    hub: "Hub | None" = None
    lifecycle: "Lifecycle | None" = None
    started: int = field(default_factory=lambda: int(time.time()))
    draining: bool = False

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

    def ready_scheduler(self) -> Scheduler:
        if self.draining:
            raise APIError(
                503, "The oracle is restarting; try again shortly.", headers={"Retry-After": "5"}
            )
        if self.scheduler is None or not self.scheduler.ready:
            raise APIError(
                503, "The model is still loading; try again shortly.", headers={"Retry-After": "5"}
            )
        return self.scheduler


def get_oracle(request: Request) -> OracleState:
    state: OracleState = request.app.state.oracle
    return state
