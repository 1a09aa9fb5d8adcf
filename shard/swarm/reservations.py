"""Keys holding scouts for their own requests: making, ending and reloading reservations.

The reservations live in the store (they survive a restart and are shared by oracles on one
store); this keeps the event loop's copy of who holds which scout, which dispatch reads
without waiting. Store calls run in worker threads. One lock orders reserving, ending and
reloading, so a reload that began before a reservation was made cannot land after it and
hide it.
"""

import asyncio
from collections.abc import Callable

from shard.store.api_keys import KeyRecord
from shard.store.reservations import Reservation, ReservationStore
from shard.swarm.errors import (
    NotEnoughFreeScouts,
    ReservationNotFound,
    ScoutNotFound,
    ScoutReservedElsewhere,
)
from shard.swarm.registry import Registry


class Reservations:
    def __init__(
        self,
        store: ReservationStore,
        registry: Registry,
        free_scouts: Callable[[], list[str]],
    ) -> None:
        """`free_scouts`: connected scouts no key holds, the ones to reserve first first."""
        self._store = store
        self._registry = registry
        self._free_scouts = free_scouts
        self._held_by: dict[str, str] = {}
        """scout id -> key id, for every active reservation."""
        self._lock = asyncio.Lock()

    def holder(self, scout_id: str) -> str | None:
        """The key holding the scout, if any."""
        return self._held_by.get(scout_id)

    async def active(self, key_id: str | None) -> list[Reservation]:
        """Reservations holding scouts now: the key's own, or everyone's for None."""
        found = await asyncio.to_thread(self._store.active)
        return [r for r in found if key_id is None or r.key_id == key_id]

    async def refresh(self) -> None:
        """Reload who holds which scout (reservations expire by time, so this runs often)."""
        async with self._lock:
            await self._reload()

    async def _reload(self) -> None:
        active = await asyncio.to_thread(self._store.active)
        self._held_by = {
            scout_id: reservation.key_id
            for reservation in active
            for scout_id in reservation.scout_ids
        }

    async def reserve(
        self, key: KeyRecord, scout_id: str | None, count: int, seconds: int
    ) -> Reservation:
        """Hold the named scout, or `count` free ones, for the key's requests."""
        async with self._lock:
            await self._reload()
            if scout_id is not None:
                record = self._registry.get(scout_id)
                if record is None or not record.connected:
                    raise ScoutNotFound(scout_id)
                holder = self._held_by.get(scout_id)
                if holder is not None and holder != key.id:
                    raise ScoutReservedElsewhere(scout_id)
                chosen = [scout_id]
            else:
                free = [s for s in self._free_scouts() if s not in self._held_by]
                if len(free) < count:
                    raise NotEnoughFreeScouts(len(free), count)
                chosen = free[:count]
            reservation = await asyncio.to_thread(self._store.create, key.id, chosen, seconds)
            for chosen_id in chosen:
                record = self._registry.get(chosen_id)
                if record is not None:
                    record.log("info", f"reserved until {reservation.expires_at}")
            await self._reload()
            return reservation

    async def end(self, key: KeyRecord, reservation_id: str, cancel: bool) -> Reservation:
        """Release or cancel the key's reservation (an admin may end anyone's)."""
        async with self._lock:
            found = await asyncio.to_thread(self._store.get, reservation_id)
            if found is None or (found.key_id != key.id and not key.is_admin):
                raise ReservationNotFound(reservation_id)
            status = "cancelled" if cancel else "released"
            ended = await asyncio.to_thread(self._store.end, reservation_id, status)
            if ended is None:  # deleted meanwhile by another oracle on the store
                raise ReservationNotFound(reservation_id)
            await self._reload()
            return ended
