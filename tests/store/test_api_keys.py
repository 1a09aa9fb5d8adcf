"""Keys on a real SQLite file: format, hashing, revocation, bootstrap."""

from pathlib import Path

import pytest
from sqlalchemy import select

from shard.store.api_keys import (
    KEY_PREFIX,
    KeyStore,
    LastAdminKeyError,
    hash_key,
    is_well_formed,
    new_key,
)
from shard.store.database import Database
from shard.store.schema import ApiKeyRow


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'keys.db'}")


def test_new_keys_are_prefixed_long_and_url_safe() -> None:
    keys = {new_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert key.startswith(KEY_PREFIX)
        assert len(key) - len(KEY_PREFIX) >= 32
        assert is_well_formed(key)
    assert not is_well_formed("sk-oracle-short")
    assert not is_well_formed("sk-other-" + "a" * 40)
    assert not is_well_formed(KEY_PREFIX + "a" * 31 + "!")


def test_only_the_hash_is_stored(database: Database) -> None:
    key, record = KeyStore(database).create("alice")
    with database.session() as session:
        row = session.scalar(select(ApiKeyRow))
        assert row is not None
        assert row.key_hash == hash_key(key)
        stored = [str(getattr(row, column.name)) for column in ApiKeyRow.__table__.columns]
    assert all(key not in value for value in stored)
    assert record.hint.endswith(key[-4:])


def test_authenticate_and_revoke(database: Database) -> None:
    store = KeyStore(database)
    key, record = store.create("bob", "user")
    found = store.authenticate(key)
    assert found is not None and found.id == record.id and not found.is_admin
    assert store.authenticate(key + "x") is None
    assert store.authenticate("not-a-key") is None
    assert store.revoke(record.id) is not None
    assert store.authenticate(key) is None
    assert store.revoke("key_missing") is None


def test_bootstrap_creates_one_admin_once(database: Database) -> None:
    store = KeyStore(database)
    first = store.ensure_bootstrap(None)
    assert first is not None
    record = store.authenticate(first)
    assert record is not None and record.is_admin
    assert store.ensure_bootstrap(None) is None
    assert len(store.list()) == 1


def test_bootstrap_takes_a_configured_key(database: Database) -> None:
    store = KeyStore(database)
    configured = new_key()
    assert store.ensure_bootstrap(configured) is None
    assert store.ensure_bootstrap(configured) is None
    record = store.authenticate(configured)
    assert record is not None and record.is_admin
    assert len(store.list()) == 1
    with pytest.raises(ValueError):
        store.ensure_bootstrap("sk-oracle-tooshort")


def test_a_revoked_configured_key_stays_revoked_and_says_so(database: Database) -> None:
    """It used to be inserted again, and the unique hash made the oracle crash at start."""
    store = KeyStore(database)
    configured = new_key()
    store.ensure_bootstrap(configured)
    record = store.authenticate(configured)
    assert record is not None and store.revoke(record.id) is not None
    with pytest.raises(ValueError, match="revoked"):
        store.ensure_bootstrap(configured)
    assert store.authenticate(configured) is None and len(store.list()) == 1


def test_the_last_live_admin_key_is_not_revoked(database: Database) -> None:
    store = KeyStore(database)
    _, first = store.create("first", "admin")
    _, user = store.create("user", "user")
    with pytest.raises(LastAdminKeyError):
        store.revoke_unless_last_admin(first.id)
    assert store.revoke_unless_last_admin(user.id) is not None  # users are not counted
    _, second = store.create("second", "admin")
    assert store.revoke_unless_last_admin(first.id) is not None
    with pytest.raises(LastAdminKeyError):
        store.revoke_unless_last_admin(second.id)
    assert store.revoke_unless_last_admin("key_missing") is None


def test_keys_survive_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'again.db'}"
    key, _ = KeyStore(Database(url)).create("carol")
    assert KeyStore(Database(url)).authenticate(key) is not None
