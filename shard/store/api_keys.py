"""API keys: `sk-oracle-` plus 43 random URL-safe characters, kept only as SHA-256 hashes.

The keys are long random secrets, so a fast hash is enough (as for GitHub tokens); lookup is by
hash, and the final comparison is constant-time.
"""

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from shard.store.database import Database
from shard.store.schema import ApiKeyRow

KEY_PREFIX = "sk-oracle-"
MIN_SECRET_LENGTH = 32
_URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

Role = Literal["admin", "user"]


@dataclass(frozen=True)
class KeyRecord:
    """What the server knows of a key: never the key itself."""

    id: str
    name: str
    role: Role
    hint: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def is_well_formed(key: str) -> bool:
    secret = key.removeprefix(KEY_PREFIX)
    return (
        key.startswith(KEY_PREFIX)
        and len(secret) >= MIN_SECRET_LENGTH
        and all(c in _URL_SAFE for c in secret)
    )


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _record(row: ApiKeyRow) -> KeyRecord:
    role: Role = "admin" if row.role == "admin" else "user"
    return KeyRecord(row.id, row.name, role, row.hint, row.created_at, row.revoked_at)


class LastAdminKeyError(Exception):
    """Revoking this key would leave no live admin key."""


class KeyStore:
    """Create, list, revoke and check keys."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def create(
        self, name: str = "", role: Role = "user", key: str | None = None
    ) -> tuple[str, KeyRecord]:
        """Make a key (or register a given one); returns the key, shown this once only."""
        key = key or new_key()
        if not is_well_formed(key):
            raise ValueError(
                f"an API key is '{KEY_PREFIX}' followed by at least {MIN_SECRET_LENGTH} "
                "URL-safe characters"
            )
        row = ApiKeyRow(
            id=f"key_{uuid.uuid4().hex[:24]}",
            name=name,
            key_hash=hash_key(key),
            hint=f"{KEY_PREFIX}...{key[-4:]}",
            role=role,
            created_at=datetime.now(UTC),
        )
        with self._db.session() as session:
            session.add(row)
        return key, _record(row)

    def authenticate(self, key: str) -> KeyRecord | None:
        """The live record for this key, or None (unknown, revoked or malformed)."""
        if not key.startswith(KEY_PREFIX):
            return None
        digest = hash_key(key)
        with self._db.session() as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
            if row is None or not hmac.compare_digest(row.key_hash, digest):
                return None
            if row.revoked_at is not None:
                return None
            return _record(row)

    def list(self) -> list[KeyRecord]:
        with self._db.session() as session:
            rows = session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at)).all()
            return [_record(row) for row in rows]

    def revoke(self, key_id: str) -> KeyRecord | None:
        with self._db.session() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            return _record(row)

    def live_ids(self, key_ids: set[str]) -> set[str]:
        """Those of `key_ids` that name keys not revoked."""
        with self._db.session() as session:
            query = select(ApiKeyRow.id).where(
                ApiKeyRow.id.in_(key_ids), ApiKeyRow.revoked_at.is_(None)
            )
            return set(session.scalars(query).all())

    def count_live(self, role: Role | None = None) -> int:
        with self._db.session() as session:
            query = (
                select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None))
            )
            if role is not None:
                query = query.where(ApiKeyRow.role == role)
            return int(session.scalar(query) or 0)

    def revoke_unless_last_admin(self, key_id: str) -> KeyRecord | None:
        """`revoke`, but the last live admin key stays (raises `LastAdminKeyError`): through
        the API, nothing could make another."""
        with self._db.session() as session:
            row = session.get(ApiKeyRow, key_id)
            live_admin = row is not None and row.role == "admin" and row.revoked_at is None
        if live_admin and self.count_live("admin") <= 1:
            raise LastAdminKeyError(key_id)
        return self.revoke(key_id)

    def ensure_bootstrap(self, configured: str | None) -> str | None:
        """On start: register `SHARD_API_KEY` as admin if given, else make the first admin key
        when there are none. Returns a newly made key (for printing once), else None."""
        if configured:
            self._register_configured(configured)
            return None
        if self.count_live() == 0:
            key, _ = self.create("bootstrap admin", "admin")
            return key
        return None

    def _register_configured(self, key: str) -> None:
        """`SHARD_API_KEY` as an admin key, unless it is one; a revoked one stays revoked.
        Two oracles starting on one store may both insert it: the second finds it there."""
        digest = hash_key(key)
        with self._db.session() as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
        if row is not None and row.revoked_at is not None:
            raise ValueError(
                "it was revoked; choose another, or unset it and make an admin key with "
                "`shard keys create --admin`"
            )
        if row is None:
            try:
                self.create("SHARD_API_KEY", "admin", key)
            except IntegrityError:
                if self.authenticate(key) is None:
                    raise
