"""A swarm oracle (no n-gram drafts, so scouts are the only draft source), real scout
processes, and the outputs the oracle gives with no scouts at all."""

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, SERVED_ALIAS, RunningOracle, auth, start_oracle, stop_oracle

PROMPTS: list[dict[str, Any]] = [
    {"prompt": "Write a short poem about the sea.", "temperature": 0},
    {"prompt": "Count from one to twenty in words.", "temperature": 0},
    {"prompt": "Describe a cat.", "temperature": 0.8, "seed": 11},
    {"prompt": "List some colours.", "temperature": 1.0, "top_p": 0.9, "seed": 5},
]


def complete(client: openai.OpenAI, case: dict[str, Any], max_tokens: int = 40) -> str:
    options = {k: v for k, v in case.items() if k != "prompt"}
    response = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[{"role": "user", "content": case["prompt"]}],
        max_tokens=max_tokens,
        **options,
    )
    return response.choices[0].message.content or ""


def complete_all(client: openai.OpenAI) -> list[str]:
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        return list(pool.map(lambda case: complete(client, case), PROMPTS))


def complete_until_verified(
    client: openai.OpenAI,
    oracle: RunningOracle,
    scout_id: str,
    solo: list[str],
    rounds: int = 80,
    rejected_too: bool = False,
) -> dict[str, Any]:
    """Run the prompts until some of the scout's drafts were verified in time (and, with
    `rejected_too`, some of them rejected), every round identical to the oracle alone.

    Only drafts ahead of the oracle are verified. A scout with the oracle's own model on the
    other core is no faster than the oracle, so it is ahead only now and then: measured after
    the other hub tests, 3 draft tokens verified in 10 rounds, and 8 in 24 (in a run where
    24 rounds ran out with none of the 8 wrong). A quarter of `--hostile corrupt`'s tokens
    are wrong, so k verified tokens hold none wrong with chance (3/4)^k: about 24 tokens
    (80 rounds) leave 0.1%. A round takes about 2.5 s, so the cases that need many rounds
    cost minutes, and most take a dozen; the status after the last round is returned."""
    for _ in range(rounds):
        assert complete_all(client) == solo
        status = scout_status(oracle, scout_id)
        accepted, drafted = status["accepted_tokens"], status["draft_tokens"]
        if accepted > 0 and (drafted > accepted or not rejected_too):
            break
    return status


def wait_for(condition: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


def scout_status(oracle: RunningOracle, scout_id: str) -> dict[str, Any]:
    response = httpx.get(f"{oracle.base_url}/scouts/{scout_id}/status", headers=auth(ADMIN_KEY))
    if response.status_code == 404:
        return {"status": "unknown", "connected": False}
    response.raise_for_status()
    status: dict[str, Any] = response.json()
    return status


def scout_logs(oracle: RunningOracle, scout_id: str, level: str = "debug") -> str:
    """The scout's whole kept log at `level` and above (a slow scout on these shared cores
    logs many late drafts, which would push early events off the default 100)."""
    response = httpx.get(
        f"{oracle.base_url}/scouts/{scout_id}/logs",
        params={"level": level, "limit": 500},
        headers=auth(ADMIN_KEY),
    )
    return " | ".join(entry["message"] for entry in response.json()["data"])


class ScoutProcess:
    """A real `shard scout` process with the embedded draft model."""

    def __init__(
        self, oracle: RunningOracle, log_dir: Path, scout_id: str, *flags: str, key: str = ADMIN_KEY
    ) -> None:
        self.log_path = log_dir / f"scout-{scout_id}-{time.monotonic_ns()}.log"
        command = [
            sys.executable,
            "-m",
            "shard",
            "scout",
            "--oracle",
            oracle.base_url,
            "--key",
            key,
            "--scout-id",
            scout_id,
            "--threads",
            "1",
            "--slots",
            "4",
            "--reconnect-max-s",
            "2",
            *flags,
        ]
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="package")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOracle]:
    running = start_oracle(
        tmp_path_factory.mktemp("swarm"),
        "--served-model-name",
        SERVED_ALIAS,
        "--parallel",
        "4",
        "--threads",
        "1",  # the scouts have the other core: spinning llama.cpp threads must not share one
        "--no-ngram-drafts",
    )
    yield running
    stop_oracle(running)


@pytest.fixture(scope="package")
def swarm_client(swarm: RunningOracle) -> openai.OpenAI:
    return swarm.client(max_retries=0, timeout=180)


@pytest.fixture(scope="package")
def solo_outputs(swarm: RunningOracle, swarm_client: openai.OpenAI) -> list[str]:
    """What the oracle answers with no scout connected: no drafts at all."""
    assert httpx.get(f"{swarm.base_url}/scouts", headers=auth(ADMIN_KEY)).json()["data"] == []
    return complete_all(swarm_client)


@pytest.fixture
def scout_logs_dir(tmp_path: Path) -> Path:
    return tmp_path
