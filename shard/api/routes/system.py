"""GET /metrics (Prometheus text) and GET /system/status (health, model, performance)."""

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from shard import __version__
from shard.api.auth import bearer_token, keyed
from shard.api.errors import APIError
from shard.api.oracle_state import OracleState, get_oracle
from shard.store.api_keys import KeyRecord

router = APIRouter()
Oracle = Annotated[OracleState, Depends(get_oracle)]


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, oracle: Oracle) -> Response:
    """Open by default, like most exporters; `--metrics-require-admin` closes it."""
    if oracle.metrics_require_admin:
        token = bearer_token(request)
        record = await asyncio.to_thread(oracle.keys.authenticate, token) if token else None
        if record is None:
            raise APIError(401, "This endpoint needs an admin key.", code="unauthorized")
        if not record.is_admin:
            raise APIError(403, "This endpoint needs an admin key.", code="forbidden")
    return Response(oracle.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@router.get("/system/status")
async def system_status(
    _: Annotated[KeyRecord, Depends(keyed("system"))], oracle: Oracle
) -> dict[str, Any]:
    """Operational state, model and recent performance; never a key or a secret."""
    scheduler = oracle.scheduler
    ready = scheduler is not None and scheduler.ready
    recent = oracle.metrics.recent()
    engine = scheduler.engine if scheduler is not None else None
    return {
        "status": "draining" if oracle.draining else "operational" if ready else "loading",
        "version": __version__,
        "mode": "standalone",
        "model": {
            "id": oracle.model_names[0],
            "aliases": oracle.model_names[1:],
            "file": oracle.model_path,
            "chat_template": engine.template_description if engine else None,
            "context_length": engine.config.n_ctx if engine else None,
            "parallel_sequences": engine.config.n_seq if engine else None,
        },
        "scouts": {"connected": 0},
        "load": {
            "requests_in_flight": scheduler.in_flight if scheduler else 0,
            "capacity": scheduler.capacity if scheduler else 0,
        },
        "performance": {
            "average_latency_ms": recent.average_latency_ms,
            "requests_per_minute": recent.requests_per_minute,
            "tokens_per_second": recent.tokens_per_second,
            "acceptance_rate": oracle.metrics.acceptance_rate,
            "uptime_seconds": round(time.time() - oracle.metrics.started, 1),
        },
    }
