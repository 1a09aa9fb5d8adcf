"""Phantom sequences with a real oracle and real scouts: the oracle writes the tickets' text
itself while idle, and every live sequence a scout is given brings it a phantom
(`--golden-ticket-rate 1`). An honest scout with the embedded model passes every phantom
step it is scored on; a scout drafting random tokens is banned within 20 tickets.
(Framing, timing and more cheaters over 200+ tickets are proven in process, in
test_phantoms.py.)"""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SERVED_ALIAS, RunningOracle, start_oracle, stop_oracle
from tests.swarm.conftest import ScoutProcess, scout_status, wait_for
from tests.swarm.test_hub import hostile_key

HONEST_TICKETS = 30
FILL_S = 10
"""Idle time for the oracle to write more tickets' text (it writes only while idle)."""


@pytest.fixture(scope="module")
def phantom_oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOracle]:
    running = start_oracle(
        tmp_path_factory.mktemp("phantoms"),
        "--served-model-name",
        SERVED_ALIAS,
        "--parallel",
        "2",
        "--threads",
        "1",
        "--no-ngram-drafts",
        "--golden-ticket-rate",
        "1",
    )
    yield running
    stop_oracle(running)


def phantoms_until(
    oracle: RunningOracle, scout_id: str, done: Any, timeout: float = 300
) -> dict[str, Any]:
    """Send short requests (each live sequence gives the scout a phantom), pausing so the
    oracle idles and writes tickets' text, until `done(status)`; the last status."""
    client = oracle.client(max_retries=0, timeout=120)
    wait_for(lambda: scout_status(oracle, scout_id)["connected"], 90, "the scout to join")
    deadline = time.monotonic() + timeout
    scored = -1
    while True:
        status = scout_status(oracle, scout_id)
        if done(status) or time.monotonic() > deadline:
            return status
        if status["golden_tickets"] == scored:
            time.sleep(FILL_S)  # no phantom lately: its text may be used up
        scored = status["golden_tickets"]
        client.chat.completions.create(
            model=SERVED_ALIAS,
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=8,
            temperature=0,
        )
        time.sleep(3)


def test_an_honest_scout_passes_its_phantoms(phantom_oracle: RunningOracle, tmp_path: Path) -> None:
    key = hostile_key(phantom_oracle, "honest")
    scout = ScoutProcess(phantom_oracle, tmp_path, "phantom-honest", key=key)
    try:
        status = phantoms_until(
            phantom_oracle,
            "phantom-honest",
            lambda status: status["golden_tickets"] >= HONEST_TICKETS or status["banned"],
        )
        assert status["golden_tickets"] >= HONEST_TICKETS, status
        assert not status["banned"] and status["connected"]
        assert status["golden_ticket_score"] > 0.7
    finally:
        scout.stop()


def test_a_random_drafter_is_banned_by_its_phantoms(
    phantom_oracle: RunningOracle, tmp_path: Path
) -> None:
    key = hostile_key(phantom_oracle, "random")
    scout = ScoutProcess(phantom_oracle, tmp_path, "phantom-random", "--hostile", "random", key=key)
    try:
        status = phantoms_until(phantom_oracle, "phantom-random", lambda status: status["banned"])
        assert status["banned"] and status["golden_tickets"] <= 20, status
    finally:
        scout.stop()
