"""Reservations on a real SQLite file: they survive reopening, expire by time, end once."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from shard.store.api_keys import KeyStore
from shard.store.database import Database
from shard.store.reservations import ReservationStore
from shard.store.schema import ReservationRow


def test_reservations_survive_a_restart_and_expire(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shard.db'}"
    database = Database(url)
    _, owner = KeyStore(database).create("owner")
    made = ReservationStore(database).create(owner.id, ["scout-a", "scout-b"], 300)
    assert made.status == "reserved"
    assert made.expires_at - made.reserved_at == timedelta(seconds=300)
    database.close()

    reopened = Database(url)
    store = ReservationStore(reopened)
    assert [r.id for r in store.active()] == [made.id]
    assert store.active()[0].scout_ids == ("scout-a", "scout-b")

    with reopened.session() as session:
        row = session.get(ReservationRow, made.id)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert store.active() == []
    found = store.get(made.id)
    assert found is not None and found.status == "expired"


def test_a_reservation_ends_once(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'shard.db'}")
    _, owner = KeyStore(database).create("owner")
    store = ReservationStore(database)
    made = store.create(owner.id, ["scout-a"], 60)
    released = store.end(made.id, "released")
    assert released is not None and released.status == "released"
    again = store.end(made.id, "cancelled")
    assert again is not None and again.status == "released"
    assert store.active() == []
    assert store.end("res_missing", "released") is None
