"""Stored completions: the object each client received, with the request's metadata and
messages, retrievable, listable, relabelled and deletable by its owner (OpenAI's stored
completions API)."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, delete, or_, select
from sqlalchemy.orm import Session

from shard.store.database import Database
from shard.store.schema import CompletionRow

Order = Literal["asc", "desc"]
Page = tuple[list[dict[str, Any]], bool]
"""One page of items, and whether more follow."""


class UnknownCursorError(LookupError):
    """`after` names no item of this list (a typo, or one since deleted): listing from the
    start instead would hand a paginating client its first pages again."""


@dataclass(frozen=True)
class NewCompletion:
    """What is kept of one request: the body as the client got it, its metadata, and its
    input messages (each given the id `{completion id}-{index}`)."""

    id: str
    key_id: str
    body: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ListFilter:
    model: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


class CompletionStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def save(self, completion: NewCompletion) -> None:
        messages = [
            {"id": f"{completion.id}-{index}", **message}
            for index, message in enumerate(completion.messages)
        ]
        row = CompletionRow(
            id=completion.id,
            key_id=completion.key_id,
            created_at=datetime.now(UTC),
            body=completion.body,
            kind=str(completion.body.get("object", "chat.completion")),
            model=str(completion.body.get("model", "")),
            labels=dict(completion.metadata),
            messages=messages,
        )
        with self._db.session() as session:
            session.add(row)

    def get(self, completion_id: str, key_id: str | None) -> dict[str, Any] | None:
        """The stored object; `key_id` None means any owner (an admin asking)."""
        with self._db.session() as session:
            row = _owned(session, completion_id, key_id)
            return None if row is None else _stored_object(row)

    def list(
        self,
        key_id: str,
        limit: int,
        after: str | None,
        order: Order,
        where: ListFilter | None = None,
    ) -> Page:
        """One page of the owner's chat completions, oldest first for "asc"."""
        where = where or ListFilter()
        with self._db.session() as session:
            query = select(CompletionRow).where(
                CompletionRow.key_id == key_id, CompletionRow.kind == "chat.completion"
            )
            if where.model is not None:
                query = query.where(CompletionRow.model == where.model)
            for label, value in where.metadata.items():
                query = query.where(CompletionRow.labels[label].as_string() == value)
            if after is not None:
                anchor = session.get(CompletionRow, after)
                if anchor is None or anchor.key_id != key_id:
                    raise UnknownCursorError(after)
                query = query.where(_past(anchor, order))
            rows = session.scalars(_ordered(query, order).limit(limit + 1)).all()
            return [_stored_object(row) for row in rows[:limit]], len(rows) > limit

    def messages(
        self, completion_id: str, key_id: str | None, limit: int, after: str | None, order: Order
    ) -> Page | None:
        """One page of the request's messages; None when the completion is not the caller's."""
        with self._db.session() as session:
            row = _owned(session, completion_id, key_id, chat_only=True)
            if row is None:
                return None
            messages = list(row.messages or [])
        if order == "desc":
            messages.reverse()
        ids = [message["id"] for message in messages]
        if after is not None and after not in ids:
            raise UnknownCursorError(after)
        start = ids.index(after) + 1 if after is not None else 0
        page = messages[start : start + limit]
        return page, start + limit < len(messages)

    def relabel(
        self, completion_id: str, key_id: str | None, metadata: dict[str, str]
    ) -> dict[str, Any] | None:
        """Replace the completion's metadata; the updated object, or None if not the caller's."""
        with self._db.session() as session:
            row = _owned(session, completion_id, key_id, chat_only=True)
            if row is None:
                return None
            row.labels = dict(metadata)
            return _stored_object(row)

    def delete(self, completion_id: str, key_id: str | None) -> bool:
        with self._db.session() as session:
            row = _owned(session, completion_id, key_id)
            if row is None:
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


def _owned(
    session: Session, completion_id: str, key_id: str | None, chat_only: bool = False
) -> CompletionRow | None:
    """The row, if it is the caller's (and a chat completion, when only those will do)."""
    row = session.get(CompletionRow, completion_id)
    if row is None or (key_id is not None and row.key_id != key_id):
        return None
    return None if chat_only and row.kind != "chat.completion" else row


def _stored_object(row: CompletionRow) -> dict[str, Any]:
    """The body the client received; a chat completion also carries its current metadata,
    as OpenAI's stored objects do."""
    body = dict(row.body)
    if row.kind == "chat.completion":
        body["metadata"] = dict(row.labels or {})
    return body


def _ordered(query: Select[CompletionRow], order: Order) -> Select[CompletionRow]:
    if order == "asc":
        return query.order_by(CompletionRow.created_at.asc(), CompletionRow.id.asc())
    return query.order_by(CompletionRow.created_at.desc(), CompletionRow.id.desc())


def _past(anchor: CompletionRow, order: Order) -> ColumnElement[bool]:
    """Rows after `anchor` in the listing's order (creation time, then id)."""
    if order == "asc":
        return or_(
            CompletionRow.created_at > anchor.created_at,
            and_(CompletionRow.created_at == anchor.created_at, CompletionRow.id > anchor.id),
        )
    return or_(
        CompletionRow.created_at < anchor.created_at,
        and_(CompletionRow.created_at == anchor.created_at, CompletionRow.id < anchor.id),
    )
