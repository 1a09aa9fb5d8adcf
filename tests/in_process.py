"""The whole oracle app in-process on a fake model (tests/fake_model.py): for what the HTTP
layer decides (validation, auth, errors, OpenAPI), where the real model is not the point."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
from starlette.testclient import TestClient

from shard.api.app import create_app
from shard.config import OracleSettings
from shard.store.api_keys import KeyStore
from shard.store.database import Database
from tests.conftest import ADMIN_KEY, GENEROUS_LIMITS, SERVED_ALIAS, auth
from tests.fake_model import FakeModel

FAKE_MODEL_FILE = "fake-model.gguf"


@contextmanager
def in_process_oracle(store_dir: Path, **settings: object) -> Iterator[TestClient]:
    """An httpx client (Starlette's TestClient) bound to a running app, with the admin key."""
    limits = {name.removeprefix("SHARD_").lower(): value for name, value in GENEROUS_LIMITS.items()}
    options = {
        "database_url": f"sqlite:///{store_dir / 'shard.db'}",
        "served_model_name": [SERVED_ALIAS],
        "parallel": 4,
        "n_ctx": 2048,
        "draft_max": 0,
        **limits,
        **settings,
    }
    database = Database(str(options["database_url"]))
    KeyStore(database).ensure_bootstrap(ADMIN_KEY)
    app = create_app(
        OracleSettings(**options),  # type: ignore[arg-type]
        Path(FAKE_MODEL_FILE),
        database,
        lambda _: FakeModel(n_vocab=64),
    )
    with TestClient(app, headers=auth(ADMIN_KEY)) as client:
        deadline = time.monotonic() + 30
        while client.get("/health").status_code != 200:  # the model loads in the background
            assert time.monotonic() < deadline, "the fake model did not load"
            time.sleep(0.02)
        yield client


def openai_client(http: TestClient) -> openai.OpenAI:
    """The official client, talking to the in-process app."""
    return openai.OpenAI(
        api_key=ADMIN_KEY, base_url=str(http.base_url), http_client=http, max_retries=0
    )
