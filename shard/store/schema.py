"""Tables. Keys are stored only as SHA-256 hashes; completions as the JSON the client got."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 2


class Base(DeclarativeBase):
    pass


class SchemaVersion(Base):
    """One row: the schema version this database was last migrated to."""

    __tablename__ = "schema_version"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    hint: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CompletionRow(Base):
    __tablename__ = "completions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    kind: Mapped[str] = mapped_column(String(32), default="chat.completion")
    """The body's `object`: only chat completions are listed under /chat/completions."""
    model: Mapped[str] = mapped_column(String(256), default="")
    labels: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)
    """The request's `metadata`, changeable afterwards (POST /chat/completions/{id})."""
    messages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    """The request's messages, each with its id (GET /chat/completions/{id}/messages)."""

    __table_args__ = (Index("ix_completions_owner_created", "key_id", "created_at"),)


class ReservationRow(Base):
    """A key's hold on some scouts until `expires_at`; status reserved, released, cancelled."""

    __tablename__ = "scout_reservations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id"))
    scout_ids: Mapped[list[str]] = mapped_column(JSON)
    reserved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    status: Mapped[str] = mapped_column(String(16))


class ScoutIdentityRow(Base):
    """A scout id belongs to the key that first joined with it."""

    __tablename__ = "scout_identities"

    scout_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id"), index=True)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ScoutReputationRow(Base):
    """A key's record as a scout: golden-ticket scores, live acceptance, and any ban.

    Kept per key, not per scout id, so a new scout id does not shed a bad record.
    """

    __tablename__ = "scout_reputation"

    key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id"), primary_key=True)
    tickets: Mapped[int] = mapped_column(Integer, default=0)
    ticket_score_sum: Mapped[float] = mapped_column(Float, default=0.0)
    draft_tokens: Mapped[int] = mapped_column(Integer, default=0)
    accepted_tokens: Mapped[int] = mapped_column(Integer, default=0)
    banned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    banned_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ban_reason: Mapped[str] = mapped_column(String(300), default="")


class ContributionRow(Base):
    """Draft tokens a key's scouts got accepted, per hour: what earns the scout tier."""

    __tablename__ = "scout_contributions"

    key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id"), primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    """Hours since the Unix epoch."""
    accepted_tokens: Mapped[int] = mapped_column(Integer, default=0)
