"""GET /metrics (Prometheus text) and GET /system/status (health, model, performance)."""

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from shard import __version__
from shard.api.auth import bearer_token, keyed
from shard.api.errors import ADMIN, KEYED, APIError, error_responses
from shard.api.oracle_state import OracleState, get_oracle
from shard.api.scout_views import scout_statuses
from shard.api.unicode_bodies import UnicodeCheckedRoute
from shard.store.api_keys import KeyRecord

router = APIRouter(route_class=UnicodeCheckedRoute)
Oracle = Annotated[OracleState, Depends(get_oracle)]


@router.get("/metrics", response_class=Response, responses=error_responses(401, 403))
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


@router.get("/system/status", responses=error_responses(*KEYED))
async def system_status(
    _: Annotated[KeyRecord, Depends(keyed("system"))], oracle: Oracle
) -> dict[str, Any]:
    """Operational state, model and recent performance; never a key or a secret."""
    engine = oracle.engine
    ready = engine is not None and engine.ready
    recent = oracle.metrics.recent()
    status = engine.status if engine is not None else None
    return {
        "status": "draining" if oracle.draining else "operational" if ready else "loading",
        "version": __version__,
        "mode": _mode(oracle),
        "model": {
            "id": oracle.model_names[0],
            "aliases": oracle.model_names[1:],
            "file": oracle.model_path,
            "chat_template": status.chat_template if status else None,
            "context_length": status.n_ctx if status else None,
            "parallel_sequences": status.n_seq if status else None,
            "tokenizer_fingerprint": status.tokenizer_fingerprint if status else None,
            "drafts_exact": status.drafts_exact if status else None,
            "single_rows_padded": status.single_rows_padded if status else None,
            "prefix_cache_tokens": status.prefix_cache_tokens if status else None,
        },
        "compute": {
            "backend": status.backend if status else None,
            "devices": [
                {"name": d.name, "description": d.description, "type": d.kind}
                for d in (status.devices if status else ())
            ],
            "gpu_layers": status.gpu_layers if status else None,
            "threads": engine.threads if engine else None,
        },
        "scouts": {"connected": len(oracle.hub.connected) if oracle.hub else 0},
        "load": {
            "requests_in_flight": engine.in_flight if engine else 0,
            "capacity": engine.capacity if engine else 0,
            "running_sequences": engine.sequences[0] if engine else 0,
            "queued_requests": engine.sequences[1] if engine else 0,
        },
        "drafts": {
            source: {**counts, "acceptance_rate": _share(counts)}
            for source, counts in oracle.metrics.drafts_by_source().items()
        },
        "history": [
            {"minute": count.minute, "requests": count.requests, "tokens": count.tokens}
            for count in oracle.metrics.history()
        ],
        "performance": {
            "average_latency_ms": recent.average_latency_ms,
            "requests_per_minute": recent.requests_per_minute,
            "tokens_per_second": recent.tokens_per_second,
            "acceptance_rate": oracle.metrics.acceptance_rate,
            "uptime_seconds": round(time.time() - oracle.metrics.started, 1),
        },
    }


def _mode(oracle: OracleState) -> str:
    return "swarm" if oracle.hub is not None and oracle.hub.connected else "standalone"


@router.get("/system/cluster", responses=error_responses(*KEYED))
async def system_cluster(
    _: Annotated[KeyRecord, Depends(keyed("system"))], oracle: Oracle, request: Request
) -> dict[str, Any]:
    """The swarm's shape: this oracle, every scout it knows, and how work is spread."""
    engine = oracle.engine
    recent = oracle.metrics.recent()
    hub = oracle.hub
    ready = engine is not None and engine.ready
    return {
        "mode": _mode(oracle),
        "oracles": [
            {
                "id": f"{request.url.hostname}:{request.url.port}",
                "status": "draining" if oracle.draining else "healthy" if ready else "loading",
                "model": oracle.model_names[0],
                "load": engine.in_flight if engine else 0,
                "capacity": engine.capacity if engine else 0,
                "average_latency_ms": recent.average_latency_ms,
                "tokens_per_second": recent.tokens_per_second,
                "acceptance_rate": oracle.metrics.acceptance_rate,
            }
        ],
        "scouts": scout_statuses(hub) if hub else [],
        "load_balancing": {
            "strategy": "reserved-first-least-loaded",
            "description": (
                "a sequence gets its key's reserved scouts first, then unreserved scouts "
                "with the fewest sequences; scouts reserved by other keys are never used"
            ),
            "scouts_per_request": hub.settings.scouts_per_request if hub else 0,
            "draft_sources": ["scout", "prediction", "ngram"],
        },
    }


@router.post("/system/restart", status_code=202, responses=error_responses(409, *ADMIN))
async def system_restart(
    _: Annotated[KeyRecord, Depends(keyed("restart", admin=True))], oracle: Oracle
) -> JSONResponse:
    """Drain, reload the model and let scouts reconnect, in the background."""
    started = oracle.lifecycle.restart()
    if not started:
        raise APIError(409, "A restart is already under way.", code="conflict")
    return JSONResponse(
        {"status": "restarting", "message": "draining requests, reloading the model"},
        status_code=202,
    )


def _share(counts: dict[str, float]) -> float | None:
    proposed = counts.get("proposed", 0.0)
    return round(counts.get("accepted", 0.0) / proposed, 4) if proposed else None
