"""The FastAPI application: routes at their bare paths and under /v1, errors, engine lifespan."""

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from shard import __version__
from shard.api.errors import install_error_handlers
from shard.api.oracle_state import OracleState
from shard.api.routes import chat, health, models
from shard.config import OracleSettings
from shard.engine.engine import EngineConfig
from shard.engine.scheduler import Scheduler

log = logging.getLogger(__name__)


def engine_config(settings: OracleSettings, model_path: Path) -> EngineConfig:
    return EngineConfig(
        model_path=model_path,
        n_ctx=settings.n_ctx,
        n_seq=settings.parallel,
        n_batch=settings.n_batch,
        threads=settings.threads or os.cpu_count() or 1,
        chat_template=settings.chat_template,
    )


def create_app(settings: OracleSettings, model_path: Path) -> FastAPI:
    """Build the app; the model loads in the background so /health can say 'loading'."""
    state = OracleState(model_names=[model_path.stem, *settings.served_model_name])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler = Scheduler(engine_config(settings, model_path), settings.max_queue)
        state.scheduler = scheduler
        loading = asyncio.create_task(scheduler.start())
        loading.add_done_callback(_report_load_failure)
        try:
            yield
        finally:
            state.draining = True
            if not loading.done():
                await asyncio.wait({loading})
            await scheduler.stop()

    app = FastAPI(title="Shard oracle", version=__version__, lifespan=lifespan)
    app.state.oracle = state
    install_error_handlers(app)
    for prefix in ("", "/v1"):
        for module in (chat, models, health):
            app.include_router(module.router, prefix=prefix)
    return app


def _report_load_failure(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the model failed to load: %s", task.exception())
