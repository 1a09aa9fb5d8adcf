"""The `shard` command line: key management and the first-start admin key."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ADMIN_KEY, auth, start_oracle, stop_oracle

KEY_PATTERN = re.compile(r"sk-oracle-[A-Za-z0-9_-]{32,}")


def shard(*args: str, database: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shard", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "SHARD_DATABASE_URL": f"sqlite:///{database}"},
        check=False,
    )


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    created = shard("keys", "create", "--name", "ci-bot", "--admin", database=database)
    assert created.returncode == 0, created.stderr
    key = KEY_PATTERN.search(created.stdout)
    assert key is not None
    listed = shard("keys", "list", database=database)
    assert "ci-bot" in listed.stdout and "admin" in listed.stdout and "live" in listed.stdout
    assert key.group(0) not in listed.stdout
    key_id = re.search(r"key_[0-9a-f]+", listed.stdout)
    assert key_id is not None
    revoked = shard("keys", "revoke", key_id.group(0), database=database)
    assert revoked.returncode == 0
    assert "revoked" in shard("keys", "list", database=database).stdout
    missing = shard("keys", "revoke", "key_nope", database=database)
    assert missing.returncode != 0 and "no key" in missing.stderr


def test_first_start_prints_one_admin_key_once(tmp_path: Path) -> None:
    env = {"SHARD_API_KEY": ""}
    first = start_oracle(tmp_path, env=env)
    try:
        found = KEY_PATTERN.findall(first.log())
        assert len(found) == 1
        key = found[0]
        assert httpx.get(first.base_url + "/v1/keys", headers=auth(key)).status_code == 200
    finally:
        stop_oracle(first)
    second = start_oracle(tmp_path, env=env)
    try:
        assert KEY_PATTERN.findall(second.log()) == []
        assert httpx.get(second.base_url + "/v1/keys", headers=auth(key)).status_code == 200
    finally:
        stop_oracle(second)


def test_env_vars_configure_the_oracle(tmp_path: Path) -> None:
    env = {
        "SHARD_SERVED_MODEL_NAME": "alpha, beta",
        "SHARD_METRICS_REQUIRE_ADMIN": "1",
        "SHARD_N_GPU_LAYERS": "4",
    }
    running = start_oracle(tmp_path, env=env)
    try:
        status = httpx.get(running.base_url + "/system/status", headers=auth(ADMIN_KEY)).json()
        assert status["compute"]["gpu_layers"] == 0  # asked for 4, on a build without a GPU
        assert "--n-gpu-layers 4: this llama.cpp build has no GPU backend" in running.log()
        assert httpx.get(running.base_url + "/metrics").status_code == 401
        assert httpx.get(running.base_url + "/metrics", headers=auth(ADMIN_KEY)).status_code == 200
        models = httpx.get(running.base_url + "/v1/models", headers=auth(ADMIN_KEY)).json()
        ids = [model["id"] for model in models["data"]]
        assert ids[1:] == ["alpha", "beta"]
    finally:
        stop_oracle(running)


def test_a_prefix_cache_too_small_for_one_prompt_is_refused_at_start(tmp_path: Path) -> None:
    refused = shard(
        "oracle", "--n-ctx", "512", "--prefix-cache-tokens", "100", database=tmp_path / "x.db"
    )
    assert refused.returncode != 0
    assert "--prefix-cache-tokens 100 is too small to hold one prompt" in refused.stderr
    assert "--n-ctx 512" in refused.stderr and "Traceback" not in refused.stderr


def test_a_taken_port_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        model = tmp_path / "never-read.gguf"  # the port is checked first: no model is needed
        refused = shard(
            "oracle",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model",
            str(model),
            database=tmp_path / "x.db",
        )
    assert refused.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in refused.stderr
    assert "--port" in refused.stderr and "Traceback" not in refused.stderr
