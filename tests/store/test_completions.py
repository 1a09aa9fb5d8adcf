"""The completion store on a real SQLite file: retention, the stored-completions queries
(filters, messages, metadata updates; test_scale_out.py runs the same on PostgreSQL), and the
migration of a schema-1 database."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from shard.store.api_keys import KeyStore
from shard.store.completions import CompletionStore, ListFilter, NewCompletion
from shard.store.database import Database
from shard.store.schema import SCHEMA_VERSION, CompletionRow


def chat(completion_id: str, model: str = "m") -> dict[str, object]:
    return {"id": completion_id, "object": "chat.completion", "model": model}


def test_retention_drops_only_old_completions(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'c.db'}")
    _, key = KeyStore(database).create("k")
    store = CompletionStore(database)
    store.save(NewCompletion("old", key.id, chat("old")))
    store.save(NewCompletion("new", key.id, chat("new")))
    with database.session() as session:
        row = session.get(CompletionRow, "old")
        assert row is not None
        row.created_at = datetime.now(UTC) - timedelta(days=40)
    assert store.purge_older_than(0) == 0
    assert store.purge_older_than(30) == 1
    assert store.get("old", None) is None
    assert store.get("new", key.id) == {**chat("new"), "metadata": {}}
    assert store.get("new", "someone-else") is None


def check_stored_completion_queries(database: Database) -> None:
    """Filters by model and metadata, owner scoping, message pages, metadata replacement."""
    keys = KeyStore(database)
    _, owner = keys.create("owner")
    _, other = keys.create("other")
    store = CompletionStore(database)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    store.save(NewCompletion("a", owner.id, chat("a", "m1"), {"team": "x", "run": "1"}, messages))
    store.save(NewCompletion("b", owner.id, chat("b", "m2"), {"team": "x"}))
    store.save(NewCompletion("c", owner.id, chat("c", "m1"), {"team": "y"}))
    store.save(NewCompletion("d", other.id, chat("d", "m1"), {"team": "x"}))
    legacy = {"id": "t", "object": "text_completion", "model": "m1"}
    store.save(NewCompletion("t", owner.id, legacy))

    def ids(where: ListFilter, order: str = "asc") -> list[str]:
        items, _ = store.list(owner.id, 10, None, order, where)  # type: ignore[arg-type]
        return [item["id"] for item in items]

    assert ids(ListFilter()) == ["a", "b", "c"]  # not others', not legacy text completions
    assert ids(ListFilter(model="m1")) == ["a", "c"]
    assert ids(ListFilter(metadata={"team": "x"})) == ["a", "b"]
    assert ids(ListFilter(model="m1", metadata={"team": "x", "run": "1"})) == ["a"]
    assert ids(ListFilter(metadata={"team": "z"})) == []
    assert ids(ListFilter(), "desc") == ["c", "b", "a"]
    assert store.get("t", owner.id) == legacy  # still kept, retrievable by id
    assert store.relabel("t", owner.id, {"a": "b"}) is None  # but not a stored chat completion
    assert store.messages("t", owner.id, 5, None, "asc") is None

    page, more = store.messages("a", owner.id, 1, None, "asc") or ([], False)
    assert page == [{"id": "a-0", **messages[0]}] and more
    page, more = store.messages("a", owner.id, 5, "a-0", "asc") or ([], False)
    assert [m["id"] for m in page] == ["a-1"] and not more
    page, _ = store.messages("a", owner.id, 5, None, "desc") or ([], False)
    assert [m["id"] for m in page] == ["a-1", "a-0"]
    assert store.messages("a", other.id, 5, None, "asc") is None
    assert store.messages("b", owner.id, 5, None, "asc") == ([], False)

    updated = store.relabel("a", owner.id, {"team": "y"})
    assert updated is not None and updated["metadata"] == {"team": "y"}
    assert ids(ListFilter(metadata={"team": "y"})) == ["a", "c"]
    assert store.relabel("a", other.id, {}) is None
    assert store.relabel("a", None, {})  # an admin may
    assert store.get("a", owner.id) == {**chat("a", "m1"), "metadata": {}}


def test_stored_completion_queries_on_sqlite(tmp_path: Path) -> None:
    check_stored_completion_queries(Database(f"sqlite:///{tmp_path / 'q.db'}"))


def test_a_schema_1_database_is_migrated_keeping_its_completions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    database = Database(url)
    _, key = KeyStore(database).create("k")
    with database.engine.begin() as connection:  # make it what schema 1 was
        for column in ("kind", "model", "metadata", "messages"):
            connection.execute(text(f"ALTER TABLE completions DROP COLUMN {column}"))
        connection.execute(text("UPDATE schema_version SET version = 1"))
        connection.execute(
            text(
                "INSERT INTO completions (id, key_id, created_at, body) VALUES "
                "('old-chat', :key, '2026-01-01 00:00:00', :chat), "
                "('old-text', :key, '2026-01-02 00:00:00', :text)"
            ),
            {
                "key": key.id,
                "chat": '{"id": "old-chat", "object": "chat.completion", "model": "gemma"}',
                "text": '{"id": "old-text", "object": "text_completion", "model": "gemma"}',
            },
        )
    database.close()
    migrated = Database(url)
    with migrated.engine.connect() as connection:
        assert connection.execute(text("SELECT version FROM schema_version")).scalar() == 2
    assert SCHEMA_VERSION == 2
    store = CompletionStore(migrated)
    items, _ = store.list(key.id, 10, None, "asc", ListFilter(model="gemma"))
    assert [item["id"] for item in items] == ["old-chat"]
    assert store.get("old-text", key.id) == {
        "id": "old-text",
        "object": "text_completion",
        "model": "gemma",
    }
    assert store.messages("old-chat", key.id, 10, None, "asc") == ([], False)
    Database(url).close()  # opening it again changes nothing
