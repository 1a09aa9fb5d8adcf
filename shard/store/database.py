"""Opens the database named by URL, creating and migrating the schema on start.

SQLite is the embedded default (one file, no server); PostgreSQL works given its URL. Calls are
synchronous: async handlers run them with `asyncio.to_thread`.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from shard.store.schema import SCHEMA_VERSION, Base, CompletionRow, SchemaVersion


def with_driver(url: str) -> str:
    """`postgresql://` means psycopg 3 here (SQLAlchemy would otherwise look for psycopg2)."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


class Database:
    """A SQLAlchemy engine plus a session factory, schema ready."""

    def __init__(self, url: str) -> None:
        parsed = make_url(with_driver(url))
        options: dict[str, object] = {"pool_pre_ping": True}
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine: Engine = create_engine(parsed, **options)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.migrate()

    def migrate(self) -> None:
        """Create missing tables, then bring an older schema up to date step by step."""
        Base.metadata.create_all(self.engine)
        with self.session() as session:
            if self.engine.dialect.name == "postgresql":  # oracles starting together: one
                session.execute(text("SELECT pg_advisory_xact_lock(7261)"))  # migrates
            current = session.scalar(select(SchemaVersion.version))
            if current is None:
                session.add(SchemaVersion(version=SCHEMA_VERSION))
                return
            if current > SCHEMA_VERSION:
                raise RuntimeError(
                    f"the database is at schema {current}, newer than this Shard ({SCHEMA_VERSION})"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                _STEPS[version](session.connection())
            session.execute(update(SchemaVersion).values(version=SCHEMA_VERSION))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(connection: object, _: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _completions_keep_requests(connection: Connection) -> None:
    """Schema 2: completions gain their kind, model, metadata and messages (the stored
    completions API filters and updates them); older rows take kind and model from the body
    and have no messages."""
    for column, ddl in (
        ("kind", "VARCHAR(32) NOT NULL DEFAULT 'chat.completion'"),
        ("model", "VARCHAR(256) NOT NULL DEFAULT ''"),
        ("metadata", "JSON"),
        ("messages", "JSON"),
    ):
        connection.execute(text(f"ALTER TABLE completions ADD COLUMN {column} {ddl}"))
    rows = connection.execute(select(CompletionRow.id, CompletionRow.body)).all()
    for completion_id, body in rows:
        connection.execute(
            update(CompletionRow)
            .where(CompletionRow.id == completion_id)
            .values(
                kind=str(body.get("object", "chat.completion")), model=str(body.get("model", ""))
            )
        )


_STEPS = {2: _completions_keep_requests}
"""The step that brings a database from the version before each key to that version."""
