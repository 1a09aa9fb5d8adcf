"""Fixtures that start real oracles (the embedded model, a free port) for integration tests."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

SERVED_ALIAS = "llama-3-70b-bitnet"
ADMIN_KEY = "sk-oracle-" + "test-admin-key-for-the-test-suite-0123456789"
TEST_KEY = ADMIN_KEY
TEST_DECODE_TIMINGS = Path.home() / ".cache" / "shard" / "test-decode-timings.json"
"""Decode timings measured by test oracles (often on a busy machine) are kept apart from the
ones a real oracle uses, and reused by the next test run."""
GENEROUS_LIMITS = {
    "SHARD_RATE_LIMIT_CHAT": "100000/minute",
    "SHARD_RATE_LIMIT_SYSTEM": "100000/minute",
    "SHARD_RATE_LIMIT_SCOUTS": "100000/minute",
    "SHARD_RATE_LIMIT_SCOUT_CONNECTS": "100000/minute",
}


@dataclass
class RunningOracle:
    """A real `shard oracle` process and how to reach it."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def client(self, **options: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=TEST_KEY, **options)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_oracle(
    log_dir: Path, *flags: str, env: dict[str, str] | None = None, port: int | None = None
) -> RunningOracle:
    """Start `python -m shard oracle` with its store in `log_dir`; wait until it is healthy.

    The admin key comes from SHARD_API_KEY, and rate limits are generous unless `env` says
    otherwise.
    """
    port = port or free_port()
    defaults = {
        "SHARD_API_KEY": ADMIN_KEY,
        "SHARD_DATABASE_URL": f"sqlite:///{log_dir / 'shard.db'}",
        "SHARD_CALIBRATION_CACHE": str(TEST_DECODE_TIMINGS),
        **GENEROUS_LIMITS,
    }
    log_path = log_dir / f"oracle-{port}-{time.monotonic_ns()}.log"
    command = [sys.executable, "-m", "shard", "oracle", "--port", str(port), *flags]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, **defaults, **(env or {})},
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"oracle exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return RunningOracle(process, base_url, log_path)
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    stop_oracle(RunningOracle(process, base_url, log_path))
    raise RuntimeError(f"oracle did not become healthy:\n{log_path.read_text()}")


def stop_oracle(oracle: RunningOracle) -> None:
    if oracle.process.poll() is None:
        os.killpg(oracle.process.pid, signal.SIGTERM)
        try:
            oracle.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(oracle.process.pid, signal.SIGKILL)
            oracle.process.wait()


@pytest.fixture(scope="session")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOracle]:
    """The shared oracle: 4 parallel sequences, the spec's model alias."""
    running = start_oracle(
        tmp_path_factory.mktemp("oracle"),
        "--served-model-name",
        SERVED_ALIAS,
        "--parallel",
        "4",
        "--n-ctx",
        "2048",
    )
    yield running
    stop_oracle(running)


@pytest.fixture(scope="session")
def client(oracle: RunningOracle) -> openai.OpenAI:
    return oracle.client(max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def http(oracle: RunningOracle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=oracle.base_url, timeout=120, headers=auth(ADMIN_KEY)) as session:
        yield session
