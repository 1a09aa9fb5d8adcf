"""Stored completions: the object each client received, retrievable by its owner."""

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, select

from shard.store.database import Database
from shard.store.schema import CompletionRow


class CompletionStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def save(self, completion_id: str, key_id: str, body: dict[str, Any]) -> None:
        row = CompletionRow(
            id=completion_id, key_id=key_id, created_at=datetime.now(UTC), body=body
        )
        with self._db.session() as session:
            session.add(row)

    def get(self, completion_id: str, key_id: str | None) -> dict[str, Any] | None:
        """The stored body; `key_id` None means any owner (an admin asking)."""
        with self._db.session() as session:
            row = session.get(CompletionRow, completion_id)
            if row is None or (key_id is not None and row.key_id != key_id):
                return None
            return dict(row.body)

    def list(
        self, key_id: str, limit: int, after: str | None, order: Literal["asc", "desc"]
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of the owner's completions, and whether more follow."""
        with self._db.session() as session:
            query = select(CompletionRow).where(CompletionRow.key_id == key_id)
            ordering = (
                (CompletionRow.created_at.asc(), CompletionRow.id.asc())
                if order == "asc"
                else (CompletionRow.created_at.desc(), CompletionRow.id.desc())
            )
            if after is not None:
                anchor = session.get(CompletionRow, after)
                if anchor is not None and anchor.key_id == key_id:
                    if order == "asc":
                        query = query.where(
                            (CompletionRow.created_at > anchor.created_at)
                            | (
                                (CompletionRow.created_at == anchor.created_at)
                                & (CompletionRow.id > anchor.id)
                            )
                        )
                    else:
                        query = query.where(
                            (CompletionRow.created_at < anchor.created_at)
                            | (
                                (CompletionRow.created_at == anchor.created_at)
                                & (CompletionRow.id < anchor.id)
                            )
                        )
            rows = session.scalars(query.order_by(*ordering).limit(limit + 1)).all()
            return [dict(row.body) for row in rows[:limit]], len(rows) > limit

    def delete(self, completion_id: str, key_id: str | None) -> bool:
        with self._db.session() as session:
            row = session.get(CompletionRow, completion_id)
            if row is None or (key_id is not None and row.key_id != key_id):
                return False
            session.delete(row)
            return True

    def purge_older_than(self, days: int) -> int:
        """Retention: drop completions older than `days` (0 keeps everything)."""
        if days <= 0:
            return 0
        cutoff = datetime.now(UTC) - timedelta(days=days)
        with self._db.session() as session:
            result = session.execute(delete(CompletionRow).where(CompletionRow.created_at < cutoff))
            return int(getattr(result, "rowcount", 0) or 0)
