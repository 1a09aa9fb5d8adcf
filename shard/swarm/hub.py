"""The oracle's side of the swarm, wired together: what the API and the lifecycle call.

The parts, one concept each:
- `registry`: every scout's record and connection;
- `sessions`: handshakes and each scout's read and write loops;
- `dispatch`: sequences, work out, drafts in, deadlines, draft outcomes;
- `tickets`: golden tickets out, scores into reputation, bans;
- `reservations`: keys holding scouts;
- `trust`: reputation, bans and credit, kept in the store.

Threads: everything here runs on the event loop, which never waits on the database. The
engine's reports arrive on the loop (`on_reports`); drafts go back through the engine's
draft sink, which the engine reads without waiting (docs/architecture.md, invariant 4). Store
work runs in worker threads: the handshake's, the routes', and this hub's background writer,
which flushes `trust` each second (a ban at once) and reloads reservations.
Scouts are untrusted: a failing scout is logged and dropped, never raised into anyone else.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence

from shard.store.api_keys import KeyRecord
from shard.store.reservations import Reservation, ReservationStore
from shard.swarm.dispatch import Dispatch
from shard.swarm.engine_handle import EngineHandle, SwarmEngine
from shard.swarm.protocol import CLOSE_BAD_KEY, CLOSE_BANNED, CLOSE_RESTARTING
from shard.swarm.registry import Registry, ScoutLink, ScoutRecord
from shard.swarm.reputation import Reputation
from shard.swarm.reservations import Reservations
from shard.swarm.sessions import Sessions
from shard.swarm.settings import HubSettings
from shard.swarm.tickets import TicketResult, Tickets
from shard.swarm.trust import Trust

__all__ = ["Hub", "HubSettings"]

log = logging.getLogger(__name__)

_TICK_S = 0.1
_FLUSH_S = 1.0


class Hub:
    def __init__(
        self,
        settings: HubSettings,
        engine: Callable[[], SwarmEngine | None],
        reservations: ReservationStore,
        trust: Trust,
        model_name: str,
        on_scout_count: Callable[[int], None] = lambda count: None,
        live_keys: Callable[[set[str]], set[str]] = lambda key_ids: key_ids,
    ) -> None:
        self.settings = settings
        self._live_keys = live_keys
        """Which of these key ids are live (not revoked), read from the store."""
        self.trust = trust
        self._engine = EngineHandle(engine)
        self._on_scout_count = on_scout_count
        rng = random.Random()
        self.registry = Registry(on_leave=self._scout_left, on_count=self._scouts_counted)
        self.tickets = Tickets(
            self.registry, trust, self._engine, settings.deadline_ms, rng, self._write_soon
        )
        self.reservations = Reservations(
            reservations, self.registry, lambda: self.dispatch.candidates(None)
        )
        self.dispatch = Dispatch(
            settings, self.registry, self.reservations, self.tickets, trust, self._engine, rng
        )
        self.sessions = Sessions(
            self.registry, self.dispatch, self.tickets, trust, self._engine, model_name
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._write_now = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._tick_forever()),
            asyncio.create_task(self._write_forever()),
        ]

    async def stop(self, reason: str = "the oracle is shutting down") -> None:
        for task in self._tasks:
            task.cancel()
        await self.disconnect_all(CLOSE_RESTARTING, reason)
        try:
            await asyncio.to_thread(self.trust.flush)
        except Exception:
            log.exception("could not write the scouts' last figures")

    async def disconnect_all(self, code: int, reason: str) -> None:
        """Close every scout (a restart or shutdown); running sequences are forgotten too."""
        self.dispatch.clear()
        await self.registry.disconnect_all(code, reason)

    # -- what the API and the engine call --------------------------------------------------------

    async def serve(self, link: ScoutLink, key: KeyRecord, peer: str | None = None) -> None:
        """A scout's whole session on this oracle; `peer` is the host it connects from."""
        await self.sessions.serve(link, key, peer)

    def on_reports(self, reports: Sequence[object]) -> None:
        """EngineClient listener (on the event loop): sequences' progress, draft outcomes."""
        self.dispatch.on_reports(reports)

    @property
    def connected(self) -> list[ScoutRecord]:
        return self.registry.connected

    def scout(self, scout_id: str) -> ScoutRecord | None:
        return self.registry.get(scout_id)

    def scouts(self) -> list[ScoutRecord]:
        """Every scout seen since start, connected or not."""
        return list(self.registry.records.values())

    def load(self) -> dict[str, int]:
        """Sequences each connected scout drafts for."""
        return self.dispatch.load()

    def reserved(self, scout_id: str) -> bool:
        return self.reservations.holder(scout_id) is not None

    def reputation(self, key_id: str) -> Reputation:
        """The key's reputation as cached (a key never seen here starts afresh)."""
        return self.trust.known(key_id) or Reputation(key_id)

    async def reserve(
        self, key: KeyRecord, scout_id: str | None, count: int, seconds: int
    ) -> Reservation:
        return await self.reservations.reserve(key, scout_id, count, seconds)

    async def end_reservation(
        self, key: KeyRecord, reservation_id: str, cancel: bool
    ) -> Reservation:
        """Release (drafts in flight finish) or cancel (they are dropped) a reservation."""
        ended = await self.reservations.end(key, reservation_id, cancel)
        if cancel:
            self.dispatch.withdraw(ended.key_id, ended.scout_ids)
        return ended

    async def run_tickets(self, scout_id: str, count: int) -> list[TicketResult]:
        """Test a connected scout now with `count` golden tickets."""
        return await self.tickets.run(scout_id, count)

    # -- wiring ---------------------------------------------------------------------------------

    def _scout_left(self, record: ScoutRecord) -> None:
        self.dispatch.forget_scout(record.scout_id)

    def engine_started(self, engine: SwarmEngine) -> None:
        """A new engine has loaded: tell it of the scouts connected now."""
        self._tell(engine)

    def _scouts_counted(self, count: int) -> None:
        engine = self._engine.ready()
        if engine is not None:
            self._tell(engine)
        self._on_scout_count(count)

    def _tell(self, engine: SwarmEngine) -> None:
        """Progress is followed while scouts are connected; local ones' threads are ceded."""
        connected = self.registry.connected
        engine.follow_progress(bool(connected))
        engine.cede_threads(sum(record.local_threads for record in connected))

    def _write_soon(self) -> None:
        self._write_now.set()

    # -- background work ------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        """Deadlines and pings; memory only, so a slow store never delays them."""
        last_ping = time.monotonic()
        nonce = 0
        while True:
            await asyncio.sleep(_TICK_S)
            try:
                now = time.monotonic()
                self.tickets.expire(now)
                self.dispatch.expire(now)
                if now - last_ping >= self.settings.ping_interval_s:
                    last_ping, nonce = now, nonce + 1
                    self.sessions.ping(now, nonce, self.settings.ping_interval_s)
            except Exception:  # the ticker must outlive any one bad state
                log.exception("swarm tick failed")

    def _banned_elsewhere(self, reputation: Reputation) -> None:
        """Another oracle on this store banned a key whose scouts are connected here."""
        reason = f"banned: {reputation.ban_reason}"
        for scout in self.registry.connected:
            if scout.key_id == reputation.key_id:
                scout.log("error", reason)
                self.registry.drop_soon(scout, reason, CLOSE_BANNED)

    async def _drop_revoked(self) -> None:
        """A revoked key's scouts leave within a second, here and on every oracle on this
        store: a live session would go on reading other keys' prompts."""
        keys = {scout.key_id for scout in self.registry.connected}
        if not keys:
            return
        live = await asyncio.to_thread(self._live_keys, keys)
        for scout in self.registry.connected:
            if scout.key_id not in live:
                scout.log("error", "its key was revoked")
                self.registry.drop_soon(scout, "the key was revoked", CLOSE_BAD_KEY)

    async def _write_forever(self) -> None:
        """The hub's own store work, one call at a time in a worker thread: reservations
        reloaded at start and each ping interval, trust written each second or when a ban
        asks for it, then revoked keys' scouts closed."""
        last_reload = float("-inf")
        while True:
            try:
                if time.monotonic() - last_reload >= self.settings.ping_interval_s:
                    last_reload = time.monotonic()
                    await self.reservations.refresh()
                await asyncio.to_thread(self.trust.flush)
                for reputation in self.trust.take_banned_elsewhere():
                    self._banned_elsewhere(reputation)
                await self._drop_revoked()
            except Exception:  # a store hiccup: try again next time
                log.exception("swarm store work failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._write_now.wait(), _FLUSH_S)
            self._write_now.clear()
