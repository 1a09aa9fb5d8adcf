"""Starting, stopping and restarting the engine and the swarm hub together.

A restart (POST /system/restart) drains: new requests get 503 while running ones finish (up
to a time limit), scouts are told to reconnect, the model is loaded again, and service
resumes. Scouts redial on their own (their reconnect backoff).
"""

import asyncio
import logging
import time

from shard.api.oracle_state import OracleState
from shard.engine.engine import EngineConfig
from shard.engine.scheduler import Scheduler
from shard.swarm.hub import Hub
from shard.swarm.protocol import CLOSE_RESTARTING

log = logging.getLogger(__name__)


class Lifecycle:
    def __init__(
        self, state: OracleState, config: EngineConfig, max_queue: int, drain_timeout_s: float
    ) -> None:
        self.state = state
        self.config = config
        self.max_queue = max_queue
        self.drain_timeout_s = drain_timeout_s
        self._loading: asyncio.Task[None] | None = None
        self._restarting: asyncio.Task[None] | None = None

    def start(self, hub: Hub) -> None:
        """Start loading the model in the background (so /health can say 'loading')."""
        self.state.hub = hub
        hub.start()
        self._start_engine()

    def _start_engine(self) -> None:
        state = self.state
        scheduler = Scheduler(self.config, self.max_queue)
        state.scheduler = scheduler
        state.metrics.in_flight.set_function(lambda: scheduler.in_flight)
        scheduler.add_listener(state.metrics.count_drafts)
        if state.hub is not None:
            scheduler.add_listener(state.hub.on_reports)
        self._loading = asyncio.create_task(scheduler.start())
        self._loading.add_done_callback(_report_load_failure)

    async def wait_loaded(self) -> None:
        if self._loading is not None and not self._loading.done():
            await asyncio.wait({self._loading})

    async def stop(self) -> None:
        self.state.draining = True
        if self._restarting is not None:
            self._restarting.cancel()
        await self.wait_loaded()
        if self.state.hub is not None:
            await self.state.hub.stop()
        if self.state.scheduler is not None:
            await self.state.scheduler.stop()

    def restart(self) -> bool:
        """Begin a restart in the background; False when one is already under way."""
        if self._restarting is not None and not self._restarting.done():
            return False
        self._restarting = asyncio.create_task(self._restart())
        return True

    async def _restart(self) -> None:
        state = self.state
        state.draining = True
        try:
            await self.wait_loaded()
            old = state.scheduler
            deadline = time.monotonic() + self.drain_timeout_s
            while old is not None and old.in_flight and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if state.hub is not None:
                await state.hub.disconnect_all(CLOSE_RESTARTING, "the oracle is restarting")
            if old is not None:
                await old.stop()
            self._start_engine()
            await self.wait_loaded()
            log.info("restart complete")
        finally:
            state.draining = False


def _report_load_failure(task: "asyncio.Task[None]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the model failed to load: %s", task.exception())
