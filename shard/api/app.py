"""The FastAPI application: routes at their bare paths and under /v1, errors, engine lifespan."""

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from shard import __version__
from shard.api.auth import RateLimitHeaders
from shard.api.body_limit import BodyLimit
from shard.api.errors import install_error_handlers, install_openapi_without_422
from shard.api.lifecycle import Lifecycle
from shard.api.metrics import OracleMetrics
from shard.api.oracle_state import OracleState, ScoutTier
from shard.api.rate_limits import RATE_LIMIT_HEADERS, RateLimiter
from shard.api.routes import (
    chat,
    dashboard,
    health,
    keys,
    models,
    scouts,
    stored_completions,
    system,
    text_completions,
)
from shard.config import OracleSettings
from shard.engine.devices import GpuOffload
from shard.engine.worker import EngineConfig, LoadModel, load_llama_model
from shard.store.api_keys import KeyStore
from shard.store.completions import CompletionStore
from shard.store.database import Database
from shard.store.reservations import ReservationStore
from shard.store.scout_records import ContributionStore, ScoutRecordStore
from shard.swarm.hub import Hub, HubSettings
from shard.swarm.reputation import BanPolicy
from shard.swarm.trust import Trust

log = logging.getLogger(__name__)

_RETENTION_SWEEP_SECONDS = 3600


def engine_config(settings: OracleSettings, model_path: Path) -> EngineConfig:
    return EngineConfig(
        model_path=model_path,
        n_ctx=settings.n_ctx,
        n_seq=settings.parallel,
        n_batch=settings.n_batch,
        threads=settings.threads or os.cpu_count() or 1,
        chat_template=settings.chat_template,
        draft_max=settings.draft_max,
        ngram_drafts=settings.ngram_drafts,
        draft_min_acceptance=settings.draft_min_acceptance,
        prefix_cache=settings.prefix_cache,
        prefix_cache_tokens=settings.prefix_cache_tokens,
        calibration_cache=(
            None if settings.calibration_cache in ("", "off") else Path(settings.calibration_cache)
        ),
        gpu=GpuOffload(settings.n_gpu_layers, settings.main_gpu),
        cede_threads=not settings.threads,
    )


def build_state(
    settings: OracleSettings,
    model_path: Path,
    database: Database,
    load_model: LoadModel = load_llama_model,
) -> OracleState:
    metrics = OracleMetrics()
    lifecycle = Lifecycle(
        engine_config(settings, model_path),
        settings.max_queue,
        settings.drain_timeout,
        metrics,
        load_model,
    )
    limiter = RateLimiter(
        settings.rate_limit_storage_url,
        {
            "chat": settings.rate_limit_chat,
            "scouts": settings.rate_limit_scouts,
            "scout_connect": settings.rate_limit_scout_connects,
            "system": settings.rate_limit_system,
            "restart": settings.rate_limit_restart,
        },
        {"chat": settings.rate_limit_chat_scout_tier},
    )
    return OracleState(
        model_names=[model_path.stem, *settings.served_model_name],
        keys=KeyStore(database),
        completions=CompletionStore(database),
        reservations=ReservationStore(database),
        scout_records=ScoutRecordStore(database),
        contributions=ContributionStore(database),
        rate_limiter=limiter,
        lifecycle=lifecycle,
        metrics=metrics,
        model_path=str(model_path),
        metrics_require_admin=settings.metrics_require_admin,
        scout_tier=ScoutTier(settings.scout_tier_min_tokens, settings.scout_tier_window_minutes),
    )


def build_hub(settings: OracleSettings, state: OracleState) -> Hub:
    hub_settings = HubSettings(
        deadline_ms=settings.scout_deadline_ms,
        max_misses=settings.scout_max_misses,
        min_acceptance=settings.scout_min_acceptance,
        scouts_per_request=settings.scouts_per_request,
        golden_ticket_rate=settings.golden_ticket_rate,
    )
    policy = BanPolicy(
        threshold=settings.ban_threshold,
        min_tickets=settings.ban_after_tickets,
        ban_seconds=settings.ban_seconds,
    )
    trust = Trust(state.scout_records, state.contributions, policy)
    return Hub(
        hub_settings,
        lambda: state.engine,
        state.reservations,
        trust,
        state.model_names[0],
        state.metrics.scouts_connected.set,
        state.keys.live_ids,
    )


def create_app(
    settings: OracleSettings,
    model_path: Path,
    database: Database,
    load_model: LoadModel = load_llama_model,
) -> FastAPI:
    """Build the app; the model loads in the background so /health can say 'loading'.
    `load_model` builds the model on the engine thread (tests pass a fake)."""
    state = build_state(settings, model_path, database, load_model)
    lifecycle = state.lifecycle

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lifecycle.start(build_hub(settings, state))
        sweeping = asyncio.create_task(_sweep_retention(state, settings.completion_retention_days))
        try:
            yield
        finally:
            sweeping.cancel()
            await lifecycle.stop()
            database.close()

    app = FastAPI(title="Shard oracle", version=__version__, lifespan=lifespan)
    app.state.oracle = state
    install_openapi_without_422(app)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_mb * 2**20)
    install_error_handlers(app)
    if settings.allowed_origins:  # outermost, so refusals and 500s carry the CORS headers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[*RATE_LIMIT_HEADERS, "Retry-After"],
            max_age=600,
        )
    for prefix in ("", "/v1"):
        routes = (chat, text_completions, stored_completions, models, keys, health, system, scouts)
        for module in (*routes, dashboard):
            app.include_router(module.router, prefix=prefix)
    return app


async def _sweep_retention(state: OracleState, days: int) -> None:
    """Drop completions past their retention now and every hour."""
    if days <= 0:
        return
    while True:
        with contextlib.suppress(Exception):
            removed = await asyncio.to_thread(state.completions.purge_older_than, days)
            if removed:
                log.info("retention: removed %d stored completions", removed)
        await asyncio.sleep(_RETENTION_SWEEP_SECONDS)
