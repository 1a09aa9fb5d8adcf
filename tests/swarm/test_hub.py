"""Real scouts against a real oracle: drafts change nothing a client sees (docs/architecture.md,
invariant 1), whether honest, random, or wrong in every fourth token (drafts that do get
verified in decodes), and a restart lets scouts reconnect. How each kind of misbehaviour
drops a scout is proven in process (test_sessions.py, test_dispatch.py).
"""

import asyncio
import os
import re
import time
from pathlib import Path

import httpx
import openai
import pytest
import websockets

from tests.conftest import ADMIN_KEY, SERVED_ALIAS, RunningOracle, auth, start_oracle, stop_oracle
from tests.swarm.conftest import (
    PROMPTS,
    ScoutProcess,
    complete,
    complete_all,
    complete_until_verified,
    scout_logs,
    scout_status,
    wait_for,
)
from tests.swarm.raw_scout import RawScout

STATUS_FIELDS = {
    "status",
    "load",
    "tasks_completed",
    "tasks_failed",
    "avg_latency_ms",
    "uptime_seconds",
    "acceptance_rate",
    "accepted_tokens",
}


def scout_metric(oracle: RunningOracle, what: str = "accepted") -> float:
    """shard_draft_tokens_{what}_total for scout drafts."""
    text = httpx.get(f"{oracle.base_url}/metrics").text
    pattern = rf'^shard_draft_tokens_{what}_total\{{source="scout"\}} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def test_an_honest_scout_drafts_changes_no_output_and_comes_back_after_a_restart(
    solo_outputs: list[str], swarm: RunningOracle, swarm_client: openai.OpenAI, tmp_path: Path
) -> None:
    scout = ScoutProcess(swarm, tmp_path, "honest-1")
    try:
        wait_for(lambda: scout_status(swarm, "honest-1")["connected"], 90, "scout to join")
        before = scout_metric(swarm)
        status = complete_until_verified(swarm_client, swarm, "honest-1", solo_outputs)
        assert status.keys() >= STATUS_FIELDS
        assert status["tasks_completed"] > 0
        assert status["accepted_tokens"] > 0, scout.log()
        assert scout_metric(swarm) > before
        assert isinstance(status["connected_at"], int)
        assert abs(status["connected_at"] - time.time()) < 600
        cluster = httpx.get(f"{swarm.base_url}/system/cluster", headers=auth(ADMIN_KEY)).json()
        assert cluster["mode"] == "swarm"
        assert [s["id"] for s in cluster["scouts"] if s["connected"]] == ["honest-1"]
        assert cluster["load_balancing"]["scouts_per_request"] == 1
        metrics = httpx.get(f"{swarm.base_url}/metrics").text
        assert "shard_scouts_connected 1.0" in metrics
        assert "connected with draft model" in scout_logs(swarm, "honest-1", level="info")
        warnings = httpx.get(
            f"{swarm.base_url}/scouts/honest-1/logs",
            params={"level": "warning", "limit": 5},
            headers=auth(ADMIN_KEY),
        ).json()["data"]
        assert len(warnings) <= 5
        assert all(entry["level"] in ("warning", "error") for entry in warnings)
        assert all(isinstance(entry["timestamp"], int) for entry in warnings)
        bad_level = httpx.get(
            f"{swarm.base_url}/scouts/honest-1/logs",
            params={"level": "loud"},
            headers=auth(ADMIN_KEY),
        )
        assert bad_level.status_code == 400
        restart_and_reconnect(swarm, swarm_client, scout, "honest-1", solo_outputs)
    finally:
        scout.stop()
    wait_for(lambda: not scout_status(swarm, "honest-1")["connected"], 30, "scout to leave")


def restart_and_reconnect(
    swarm: RunningOracle,
    swarm_client: openai.OpenAI,
    scout: ScoutProcess,
    scout_id: str,
    solo_outputs: list[str],
) -> None:
    """POST /system/restart drains, lets scouts go, reloads; the scout redials on its own and
    the output is still the oracle's alone."""
    user_key = httpx.post(
        f"{swarm.base_url}/keys", json={"name": "restart-user"}, headers=auth(ADMIN_KEY)
    ).json()["key"]
    refused = httpx.post(f"{swarm.base_url}/system/restart", headers=auth(user_key))
    assert refused.status_code == 403
    accepted = httpx.post(f"{swarm.base_url}/system/restart", headers=auth(ADMIN_KEY))
    assert accepted.status_code == 202
    assert accepted.json()["status"] == "restarting"
    wait_for(lambda: not scout_status(swarm, scout_id)["connected"], 60, "scouts to be let go")
    wait_for(lambda: httpx.get(f"{swarm.base_url}/health").status_code == 200, 120, "reload")
    wait_for(lambda: scout_status(swarm, scout_id)["connected"], 60, "reconnect")
    assert complete_all(swarm_client) == solo_outputs
    assert "reconnecting" in scout.log()


DROPPED_FOR_BAD_DRAFTS = (
    r"drafts accepted \d+\.\d% of the time"
    r"|banned: reputation \d\.\d\d below \S+ after \d+ golden tickets"
)


def hostile_key(oracle: RunningOracle, name: str) -> str:
    """A key of its own for a hostile scout: its golden tickets may get its key banned, and
    the scouts of later tests join with the admin key."""
    response = httpx.post(f"{oracle.base_url}/keys", json={"name": name}, headers=auth(ADMIN_KEY))
    return str(response.json()["key"])


def test_a_scout_drafting_random_tokens_changes_nothing_and_is_dropped(
    solo_outputs: list[str], swarm: RunningOracle, swarm_client: openai.OpenAI, tmp_path: Path
) -> None:
    key = hostile_key(swarm, "random")
    scout = ScoutProcess(swarm, tmp_path, "random-1", "--hostile", "random", key=key)
    try:
        wait_for(lambda: scout_status(swarm, "random-1")["connected"], 90, "scout to join")
        before = scout_metric(swarm, "accepted")
        for _ in range(6):  # it is judged on the drafts scored: more work while it has too few
            assert complete_all(swarm_client) == solo_outputs
            if scout_status(swarm, "random-1")["status"] == "dropped":
                break
        wait_for(lambda: scout_status(swarm, "random-1")["status"] == "dropped", 30, "the drop")
        # Two verdicts race, both on its drafts: too few accepted, or its key banned after
        # golden tickets it scored nothing on. Either drops it; nothing else may.
        drop = re.search(r"dropped: (.*?)(?: \| |$)", scout_logs(swarm, "random-1"))
        assert drop is not None
        assert re.fullmatch(DROPPED_FOR_BAD_DRAFTS, drop.group(1)), drop.group(1)
        status = scout_status(swarm, "random-1")
        assert status["accepted_tokens"] <= 0.05 * status["draft_tokens"]  # no credit
        assert scout_metric(swarm, "accepted") == before  # nor any in the metrics
    finally:
        scout.stop()


def test_drafts_wrong_in_every_fourth_token_are_verified_and_change_nothing(
    solo_outputs: list[str], swarm: RunningOracle, swarm_client: openai.OpenAI, tmp_path: Path
) -> None:
    """Right often enough that the engine verifies them in its decodes, wrong often enough
    that verifications must reject tokens: the case losslessness is about."""
    key = hostile_key(swarm, "corrupt")
    scout = ScoutProcess(swarm, tmp_path, "corrupt-1", "--hostile", "corrupt", key=key)
    try:
        wait_for(lambda: scout_status(swarm, "corrupt-1")["connected"], 90, "scout to join")
        status = complete_until_verified(
            swarm_client, swarm, "corrupt-1", solo_outputs, rejected_too=True
        )
        assert status["accepted_tokens"] > 0, scout_logs(swarm, "corrupt-1")
        assert status["draft_tokens"] > status["accepted_tokens"], (
            status,
            scout_logs(swarm, "corrupt-1"),
        )
    finally:
        scout.stop()


def test_a_scout_with_a_bad_key_is_refused(swarm: RunningOracle) -> None:
    bad_key = "sk-oracle-" + "x" * 40
    raw = RawScout(swarm, "bad-key", key=bad_key, tokenizer="0" * 64).start()
    assert raw.ended.wait(30)
    assert raw.close_code == 4001
    assert not raw.welcomed.is_set()


def test_a_scout_whose_key_is_revoked_is_dropped_at_once(swarm: RunningOracle) -> None:
    """Revoking is how an admin shuts a scout out; a live session would go on reading other
    keys' prompts in its work frames."""
    admin = httpx.Client(base_url=swarm.base_url, headers=auth(ADMIN_KEY), timeout=30)
    made = admin.post("/keys", json={"name": "revoked-scout"}).json()
    raw = RawScout(swarm, "revoked-1", key=made["key"]).start()
    assert raw.welcomed.wait(30), raw
    assert admin.delete(f"/keys/{made['id']}").status_code == 200
    assert raw.ended.wait(10), "still connected after its key was revoked"
    assert raw.close_code == 4001 and "revoked" in raw.close_reason, raw


def test_a_binary_frame_closes_the_scout_with_a_reason(swarm: RunningOracle) -> None:
    """Starlette's receive_text raised KeyError on one: a traceback, and no close reason."""

    async def send_binary() -> tuple[int, str]:
        url = swarm.base_url.replace("http://", "ws://") + "/scouts/connect"
        async with websockets.connect(url, additional_headers=auth(ADMIN_KEY)) as ws:
            await ws.send(b'{"type": "hello"}')
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code, closed.value.rcvd.reason

    code, reason = asyncio.run(send_binary())
    assert code == 4008 and "binary" in reason
    assert "KeyError" not in swarm.log()


def test_an_oracle_on_default_threads_cedes_one_to_a_scout_on_this_machine(
    tmp_path: Path,
) -> None:
    """Two sets of llama.cpp threads on one core slow each other far more than either works,
    so an oracle on its default thread count (every core) decodes with one fewer while a
    one-thread scout here is connected, and takes it back when it leaves; output is the
    same throughout."""
    oracle = start_oracle(tmp_path, "--served-model-name", SERVED_ALIAS, "--parallel", "2")
    cores = os.cpu_count() or 1
    assert cores >= 2, "an oracle on one core has no thread to cede"
    status_url = f"{oracle.base_url}/system/status"

    def threads() -> int:
        return int(httpx.get(status_url, headers=auth(ADMIN_KEY)).json()["compute"]["threads"])

    try:
        client = oracle.client(max_retries=0, timeout=120)
        assert threads() == cores
        alone = complete(client, PROMPTS[1])
        scout = ScoutProcess(oracle, tmp_path, "beside-1")
        try:
            wait_for(lambda: threads() == max(1, cores - 1), 60, "the oracle to cede a thread")
            assert complete(client, PROMPTS[1]) == alone
            assert "drafts on this machine with 1 CPU thread(s)" in scout_logs(oracle, "beside-1")
        finally:
            scout.stop()
        wait_for(lambda: threads() == cores, 30, "the oracle to take its thread back")
    finally:
        stop_oracle(oracle)
