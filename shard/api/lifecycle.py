"""Starting, stopping and restarting the engine and the swarm hub together.

A restart (POST /system/restart) drains: new requests get 503 while running ones finish (up
to a time limit), scouts are told to reconnect, the model is loaded again, and service
resumes. Scouts redial on their own (their reconnect backoff).
"""

import asyncio
import logging
import time

from shard.api.metrics import OracleMetrics
from shard.engine.client import EngineClient
from shard.engine.worker import EngineConfig, LoadModel, load_llama_model
from shard.swarm.hub import Hub
from shard.swarm.protocol import CLOSE_RESTARTING

log = logging.getLogger(__name__)


class Lifecycle:
    """Owns the running engine client and hub, and whether the oracle is draining."""

    def __init__(
        self,
        config: EngineConfig,
        max_queue: int,
        drain_timeout_s: float,
        metrics: OracleMetrics,
        load_model: LoadModel = load_llama_model,
    ) -> None:
        self.config = config
        self.max_queue = max_queue
        self.drain_timeout_s = drain_timeout_s
        self.metrics = metrics
        self.load_model = load_model
        self.engine: EngineClient | None = None
        self.hub: Hub | None = None
        self.draining = False
        self._stopping = False
        self._loading: asyncio.Task[None] | None = None
        self._restarting: asyncio.Task[None] | None = None

    def start(self, hub: Hub) -> None:
        """Start loading the model in the background (so /health can say 'loading')."""
        self.hub = hub
        hub.start()
        self._start_engine()

    def _start_engine(self) -> None:
        engine = EngineClient(self.config, self.max_queue, self.load_model)
        self.engine = engine
        self.metrics.in_flight.set_function(lambda: engine.in_flight)
        engine.add_listener(self.metrics.count_drafts)
        if self.hub is not None:
            engine.add_listener(self.hub.on_reports)
        self._loading = asyncio.create_task(self._load(engine))
        self._loading.add_done_callback(_report_load_failure)

    async def _load(self, engine: EngineClient) -> None:
        await engine.start()
        if self.hub is not None:  # scouts that joined meanwhile need progress, and cores
            self.hub.engine_started(engine)

    async def wait_loaded(self) -> None:
        if self._loading is not None and not self._loading.done():
            await asyncio.wait({self._loading})

    async def stop(self) -> None:
        self._stopping = True
        self.draining = True
        if self._restarting is not None:
            self._restarting.cancel()
        await self.wait_loaded()
        if self.hub is not None:
            await self.hub.stop()
        if self.engine is not None:
            await self.engine.stop()

    def restart(self) -> bool:
        """Begin a restart in the background; False when one is already under way."""
        if self._restarting is not None and not self._restarting.done():
            return False
        self._restarting = asyncio.create_task(self._restart())
        return True

    async def _restart(self) -> None:
        self.draining = True
        try:
            await self.wait_loaded()
            old = self.engine
            deadline = time.monotonic() + self.drain_timeout_s
            while old is not None and old.in_flight and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if self.hub is not None:
                await self.hub.disconnect_all(CLOSE_RESTARTING, "the oracle is restarting")
            if old is not None:
                await old.stop()
            self._start_engine()
            await self.wait_loaded()
            log.info("restart complete")
        finally:
            self.draining = self._stopping


def _report_load_failure(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the model failed to load: %s", task.exception())
