"""Completion store retention on a real SQLite file."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from shard.store.api_keys import KeyStore
from shard.store.completions import CompletionStore
from shard.store.database import Database
from shard.store.schema import CompletionRow


def test_retention_drops_only_old_completions(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'c.db'}")
    _, key = KeyStore(database).create("k")
    store = CompletionStore(database)
    store.save("old", key.id, {"id": "old"})
    store.save("new", key.id, {"id": "new"})
    with database.session() as session:
        row = session.get(CompletionRow, "old")
        assert row is not None
        row.created_at = datetime.now(UTC) - timedelta(days=40)
    assert store.purge_older_than(0) == 0
    assert store.purge_older_than(30) == 1
    assert store.get("old", None) is None
    assert store.get("new", key.id) == {"id": "new"}
    assert store.get("new", "someone-else") is None
