"""Scout reservations, kept in the store so they survive a restart (docs/architecture.md,
invariant 6)."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from shard.store.database import Database
from shard.store.schema import ReservationRow


@dataclass(frozen=True)
class Reservation:
    id: str
    key_id: str
    scout_ids: tuple[str, ...]
    reserved_at: datetime
    expires_at: datetime
    status: str
    """reserved, released, cancelled, or expired (reserved past its time)."""

    @property
    def active(self) -> bool:
        return self.status == "reserved"


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything here is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _reservation(row: ReservationRow, now: datetime) -> Reservation:
    expires = _aware(row.expires_at)
    status = "expired" if row.status == "reserved" and expires <= now else row.status
    return Reservation(
        row.id, row.key_id, tuple(row.scout_ids), _aware(row.reserved_at), expires, status
    )


class ReservationStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def create(self, key_id: str, scout_ids: list[str], seconds: int) -> Reservation:
        now = datetime.now(UTC)
        row = ReservationRow(
            id=f"res_{uuid.uuid4().hex[:24]}",
            key_id=key_id,
            scout_ids=scout_ids,
            reserved_at=now,
            expires_at=now + timedelta(seconds=seconds),
            status="reserved",
        )
        with self._db.session() as session:
            session.add(row)
        return _reservation(row, now)

    def get(self, reservation_id: str) -> Reservation | None:
        with self._db.session() as session:
            row = session.get(ReservationRow, reservation_id)
            return _reservation(row, datetime.now(UTC)) if row else None

    def active(self) -> list[Reservation]:
        """Every reservation still holding its scouts."""
        now = datetime.now(UTC)
        with self._db.session() as session:
            query = select(ReservationRow).where(
                ReservationRow.status == "reserved", ReservationRow.expires_at > now
            )
            return [_reservation(row, now) for row in session.scalars(query)]

    def end(self, reservation_id: str, status: str) -> Reservation | None:
        """Mark a reservation released or cancelled; None when there is no such one."""
        with self._db.session() as session:
            row = session.get(ReservationRow, reservation_id)
            if row is None:
                return None
            if row.status == "reserved":
                row.status = status
            return _reservation(row, datetime.now(UTC))
