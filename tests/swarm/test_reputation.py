"""Golden tickets, reputation and bans with real scouts, and the scout tier's higher limit.
(How tickets are scored and bans made is proven in process, in test_tickets.py.)

The oracle here bans a key whose reputation is below 0.3 after 8 golden tickets, for good,
and gives keys with 20 accepted draft tokens in the last hour 60 chat requests a minute
instead of 10.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from shard.swarm.golden_tickets import Ticket
from shard.swarm.reputation import BanPolicy, Reputation
from tests.conftest import ADMIN_KEY, SERVED_ALIAS, RunningOracle, auth, start_oracle, stop_oracle
from tests.swarm.conftest import ScoutProcess, scout_status, wait_for
from tests.swarm.raw_scout import EchoFeed, RawScout

BAN_AFTER = 8
TRUST_FLAGS = (
    "--served-model-name",
    SERVED_ALIAS,
    "--parallel",
    "2",
    "--threads",
    "1",
    "--ban-after-tickets",
    str(BAN_AFTER),
    "--ban-seconds",
    "0",
    "--scout-deadline-ms",
    "2000",
    "--scout-tier-min-tokens",
    "20",
    "--no-ngram-drafts",  # scouts are credited only where they are ahead of the oracle
)
TRUST_ENV = {"SHARD_RATE_LIMIT_CHAT": "10/minute", "SHARD_RATE_LIMIT_CHAT_SCOUT_TIER": "60/minute"}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trust")


@pytest.fixture(scope="module")
def trust(store_dir: Path) -> Iterator[RunningOracle]:
    running = start_oracle(store_dir, *TRUST_FLAGS, env=TRUST_ENV)
    yield running
    stop_oracle(running)


def new_key(oracle: RunningOracle, name: str) -> str:
    response = httpx.post(f"{oracle.base_url}/keys", json={"name": name}, headers=auth(ADMIN_KEY))
    return str(response.json()["key"])


def run_tickets(oracle: RunningOracle, scout_id: str, count: int) -> dict[str, Any]:
    response = httpx.post(
        f"{oracle.base_url}/scouts/{scout_id}/golden-tickets",
        json={"count": count},
        headers=auth(ADMIN_KEY),
        timeout=300,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def banned_keys(oracle: RunningOracle) -> set[str]:
    response = httpx.get(f"{oracle.base_url}/scouts/banned", headers=auth(ADMIN_KEY))
    assert response.status_code == 200
    entries = response.json()["data"]
    assert all(isinstance(entry["banned_at"], int) for entry in entries)
    return {entry["key_id"] for entry in entries}


def test_an_honest_scout_passes_its_golden_tickets(trust: RunningOracle, tmp_path: Path) -> None:
    """The oracle's own completions, cut anywhere, are what a real scout with its tokenizer
    drafts: an honest scout is never banned for them."""
    scout = ScoutProcess(trust, tmp_path, "honest-trust")
    try:
        wait_for(lambda: scout_status(trust, "honest-trust")["connected"], 90, "scout to join")
        result = run_tickets(trust, "honest-trust", BAN_AFTER)
        assert not result["banned"]
        scores = [ticket["score"] for ticket in result["tickets"]]
        for ticket in result["tickets"]:
            assert ticket["expected"] and ticket["latency_ms"] is not None
        assert len(scores) == BAN_AFTER
        assert sum(scores) / len(scores) > 0.8
        status = scout_status(trust, "honest-trust")
        assert status["golden_tickets"] >= BAN_AFTER and status["reputation"] > 0.8
        assert status["connected"] and not status["banned"]
        assert status["key_id"] not in banned_keys(trust)
    finally:
        scout.stop()


def test_bans_survive_a_restart_and_unban_lifts_them(
    trust: RunningOracle, store_dir: Path, tmp_path: Path
) -> None:
    key = new_key(trust, "to-unban")
    raw = RawScout(trust, "unban-me", key=key).start()
    assert raw.welcomed.wait(30)
    assert run_tickets(trust, "unban-me", BAN_AFTER)["banned"]
    raw.stop()
    banned_before = banned_keys(trust)

    stop_oracle(trust)
    restarted = start_oracle(
        store_dir, *TRUST_FLAGS, env=TRUST_ENV, port=int(trust.base_url.rsplit(":", 1)[1])
    )
    trust.process = restarted.process
    assert banned_keys(trust) == banned_before
    refused = RawScout(trust, "unban-me", key=key).start()
    assert refused.ended.wait(30) and refused.close_code == 4003

    user = new_key(trust, "not-admin")
    forbidden = httpx.post(f"{trust.base_url}/scouts/unban-me/unban", headers=auth(user))
    assert forbidden.status_code == 403
    lifted = httpx.post(f"{trust.base_url}/scouts/unban-me/unban", headers=auth(ADMIN_KEY))
    assert lifted.status_code == 200 and lifted.json()["banned"] is False
    again = httpx.post(f"{trust.base_url}/scouts/unban-me/unban", headers=auth(ADMIN_KEY))
    assert again.status_code == 409, again.text  # not banned now: its record is not wiped
    assert again.json()["error"]["code"] == "not_banned"
    welcomed = RawScout(trust, "unban-me", key=key).start()
    try:
        assert welcomed.welcomed.wait(30)
    finally:
        welcomed.stop()
    assert (
        httpx.post(f"{trust.base_url}/scouts/nobody/unban", headers=auth(ADMIN_KEY)).status_code
        == 404
    )


STORY = {
    "model": SERVED_ALIAS,
    "messages": [{"role": "user", "content": "Tell me about rivers."}],
    "max_tokens": 64,
    "temperature": 0,
}
HELLO = {"model": SERVED_ALIAS, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


@dataclass(frozen=True)
class Answer:
    """STORY's greedy answer, as text and as the token ids of its whole sequence."""

    content: str
    prompt_tokens: int
    script: list[int]


@pytest.fixture(scope="module")
def story(trust: RunningOracle) -> Answer:
    """Run STORY once with a scout that drafts nothing and records the work frames."""
    recorder = RawScout(trust, "recorder", record=True).start()
    try:
        wait_for(lambda: scout_status(trust, "recorder")["connected"], 30, "recorder")
        url = f"{trust.base_url}/v1/chat/completions"
        body = httpx.post(url, json=STORY, headers=auth(ADMIN_KEY), timeout=120).json()
        wait_for(lambda: len(recorder.longest_recorded()) > body["usage"]["prompt_tokens"] + 40)
    finally:
        recorder.stop()
    content = body["choices"][0]["message"]["content"]
    return Answer(content, body["usage"]["prompt_tokens"], recorder.longest_recorded())


def chat_limit(oracle: RunningOracle, key: str) -> str:
    url = f"{oracle.base_url}/v1/chat/completions"
    response = httpx.post(url, json=HELLO, headers=auth(key), timeout=60)
    return response.headers["x-ratelimit-limit"]


def test_drafts_ahead_of_the_oracle_earn_the_scout_tier(
    trust: RunningOracle, story: Answer
) -> None:
    """A scout that knows the answer drafts it before the oracle decides it: its drafts are
    verified and accepted, and its key gets the scout tier's higher limit."""
    key = new_key(trust, "contributor")
    assert chat_limit(trust, key) == "10"
    teacher = RawScout(trust, "teacher", key=key, script=story.script).start()
    try:
        wait_for(lambda: scout_status(trust, "teacher")["connected"], 30, "teacher")
        url = f"{trust.base_url}/v1/chat/completions"
        body = httpx.post(url, json=STORY, headers=auth(ADMIN_KEY), timeout=120).json()
        assert body["choices"][0]["message"]["content"] == story.content  # lossless
        wait_for(lambda: scout_status(trust, "teacher")["accepted_tokens"] >= 20, 30, "credit")
        limits = []
        for _ in range(8):  # contributions are written each second, tiers looked up every 2 s
            limits.append(chat_limit(trust, key))
            if limits[-1] == "60":
                break
            time.sleep(1)
        assert limits[-1] == "60", limits
    finally:
        teacher.stop()


def test_a_scout_copying_its_own_stream_earns_no_credit(
    trust: RunningOracle, story: Answer
) -> None:
    """The cheat: reserve a scout for your own key, stream your own request, and answer each
    work frame with the tokens the stream has already shown. Every one of them is right, and
    every one arrives after the oracle decided it, so none is credited."""
    key = new_key(trust, "echo")
    feed = EchoFeed(decided=story.prompt_tokens)
    cheat = RawScout(trust, "echo", key=key, script=story.script, echo=feed).start()
    try:
        wait_for(lambda: scout_status(trust, "echo")["connected"], 30, "echo scout")
        reserved = httpx.post(
            f"{trust.base_url}/scouts/reserve", json={"scout_id": "echo"}, headers=auth(key)
        )
        assert reserved.status_code == 201, reserved.text
        client = openai.OpenAI(base_url=trust.base_url + "/v1", api_key=key, max_retries=0)
        stream = client.chat.completions.create(**STORY, stream=True)  # type: ignore[call-overload]
        content = ""
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                content += chunk.choices[0].delta.content
                feed.decided += 1
        assert content == story.content
        assert cheat.sent_tokens >= 20  # it did copy the answer, token for token
        time.sleep(3)  # past a store write and a tier lookup
        status = scout_status(trust, "echo")
        assert status["accepted_tokens"] == 0 and status["draft_tokens"] == 0
        assert chat_limit(trust, key) == "10"
    finally:
        cheat.stop()


def test_reputation_blends_golden_tickets_and_live_acceptance() -> None:
    fresh = Reputation("k")
    assert fresh.score == 1.0  # no evidence: benefit of the doubt
    golden_only = Reputation("k", tickets=4, ticket_score_sum=2.0)
    assert golden_only.score == 0.5
    live_only = Reputation("k", draft_tokens=10, accepted_tokens=2)
    assert live_only.score == pytest.approx(0.2)
    both = Reputation("k", tickets=2, ticket_score_sum=2.0, draft_tokens=10, accepted_tokens=0)
    assert both.score == pytest.approx(0.7)


def test_ban_policy_waits_for_enough_tickets() -> None:
    policy = BanPolicy(threshold=0.3, min_tickets=3)
    bad = Reputation("k", tickets=2, ticket_score_sum=0.0)
    assert not policy.should_ban(bad)
    bad.tickets = 3
    assert policy.should_ban(bad)
    assert not policy.should_ban(Reputation("k", tickets=30, ticket_score_sum=15.0))


def test_ticket_score_is_the_matching_prefix_over_what_was_drafted() -> None:
    ticket = Ticket("s", (1, 2), (5, 6, 7, 8))
    assert ticket.score([5, 6, 7, 8]) == 1.0
    assert ticket.score([5, 6, 0, 8]) == 0.5
    assert ticket.score([]) == 0.0
    assert ticket.score([9, 6, 7, 8]) == 0.0
    assert ticket.score([5, 6]) == 1.0  # right, but slow to draft all four: not marked down
    assert ticket.score([5, 9]) == 0.5
    assert ticket.score([5, 6, 7, 8, 1, 1]) == 1.0  # past k is not asked for
