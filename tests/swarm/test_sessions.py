"""A scout's session, in process: who may join, what a joined scout is told, and how a scout
that breaks the protocol or goes away ends (only its own session suffers)."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shard.store.scout_records import ReputationRecord
from shard.swarm import sessions
from tests.swarm.fakes import FakeEngine, FakeLink, Rig, run_with_rig


def test_a_scout_joins_is_welcomed_and_turns_progress_on(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        link = await rig.connect("s1")
        welcome = await link.next_frame("welcome")
        assert welcome["model"] == "test-model" and welcome["tokenizer"] == "f" * 64
        record = rig.hub.scout("s1")
        assert record is not None and record.connected and record.key_id == rig.admin.id
        assert rig.engine.following == [True] and rig.scout_counts == [1]
        assert "connected with draft model fake" in record.logs[-1].message

        link.vanish()
        await rig.settle()
        assert not record.connected and record.status == "disconnected"
        assert "connection lost" in record.logs[-1].message
        assert rig.engine.following == [True, False] and rig.scout_counts == [1, 0]

    run_with_rig(tmp_path, body)


def test_scouts_on_this_machine_have_the_oracle_cede_their_threads(tmp_path: Path) -> None:
    """A scout that says it drafts here with n threads, and does connect from this machine,
    has the engine told to leave n threads free while it is connected; a claim from
    elsewhere is only logged."""

    async def body(rig: Rig) -> None:
        first = await rig.connect("here-1", peer="127.0.0.1", local_threads=1)
        await first.next_frame("welcome")
        second = await rig.connect("here-2", peer="localhost", local_threads=2)
        await second.next_frame("welcome")
        liar = await rig.connect("far", peer="203.0.113.9", local_threads=4)
        await liar.next_frame("welcome")
        record = rig.hub.scout("far")
        assert record is not None and record.local_threads == 0
        assert "connects from 203.0.113.9: no threads ceded" in record.logs[-1].message
        assert record.logs[-1].level == "warning"
        assert rig.engine.ceded == [1, 3, 3]  # told at every change of who is connected

        again = await rig.connect("here-1", peer="::ffff:127.0.0.1", local_threads=1)
        await again.next_frame("welcome")  # replaces its first connection: counted once
        assert rig.engine.ceded == [1, 3, 3, 2, 3]
        restarted = FakeEngine()  # a new engine (a restart) is told of who is here
        rig.hub.engine_started(restarted)
        assert (restarted.following, restarted.ceded) == ([True], [3])

        again.vanish()
        await rig.settle()
        second.vanish()
        await rig.settle()
        assert rig.engine.ceded == [1, 3, 3, 2, 3, 2, 0]

    run_with_rig(tmp_path, body)


async def _ban_the_user(rig: Rig) -> None:
    banned = ReputationRecord(rig.user.id, banned_at=datetime.now(UTC), ban_reason="tests")
    rig.records.save(banned)


async def _claim_for_admin(rig: Rig) -> None:
    link = await rig.join("taken")
    link.vanish()
    await rig.settle()


@pytest.mark.parametrize(
    ("hello", "prepare", "engine_ready", "code", "reason"),
    [
        (
            {"version": 3},
            None,
            True,
            4008,
            "protocol version 3 is not supported; this oracle speaks versions 1 and 2",
        ),
        ({"tokenizer": "0" * 64}, None, True, 4009, "tokenizer mismatch"),
        ({}, None, False, 1013, "still loading"),
        ({}, _ban_the_user, True, 4003, "banned for good: tests"),
        ({"scout_id": "taken"}, _claim_for_admin, True, 4008, "belongs to another key"),
    ],
    ids=["version", "tokenizer", "loading", "banned-key", "another-keys-id"],
)
def test_refused_handshakes(
    tmp_path: Path,
    hello: dict[str, Any],
    prepare: Callable[[Rig], Awaitable[None]] | None,
    engine_ready: bool,
    code: int,
    reason: str,
) -> None:
    async def body(rig: Rig) -> None:
        if prepare is not None:
            await prepare(rig)
        rig.engine.ready = engine_ready
        link = await rig.connect(hello.pop("scout_id", "s1"), rig.user, **hello)
        closed = await link.wait_closed()
        assert closed[0] == code and reason in closed[1], closed
        assert link.pending("welcome") == []
        assert len(rig.hub.connected) == 0

    run_with_rig(tmp_path, body)


def test_the_first_frame_must_be_hello_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "HELLO_TIMEOUT_S", 0.05)

    async def body(rig: Rig) -> None:
        early = FakeLink()
        rig._sessions.append(asyncio.create_task(rig.hub.serve(early, rig.admin)))
        early.say({"type": "pong", "nonce": 1})
        assert await early.wait_closed() == (4008, "the first frame must be hello, not pong")
        silent = FakeLink()
        rig._sessions.append(asyncio.create_task(rig.hub.serve(silent, rig.admin)))
        assert await silent.wait_closed() == (4008, "no hello in time")

    run_with_rig(tmp_path, body)


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        ("{this is not json", 4008, "malformed frame"),
        ('{"type": "draft", "seq": "s", "position": 0, "tokens": [], "pad": "x"}', 4008, "pad"),
        (
            {"type": "draft", "seq": "s", "position": 0, "tokens": [], "x": "y" * 20_000},
            1009,
            "over",
        ),
        ({"type": "hello", "version": 1, "scout_id": "s1", "tokenizer": "f"}, 4008, "sent once"),
    ],
    ids=["malformed", "unknown-field", "oversized", "second-hello"],
)
def test_a_frame_that_breaks_the_protocol_drops_only_its_scout(
    tmp_path: Path, frame: Any, code: int, reason: str
) -> None:
    async def body(rig: Rig) -> None:
        bad, good = await rig.join("bad"), await rig.join("good")
        bad.say(frame)
        closed = await bad.wait_closed()
        assert closed[0] == code and reason in closed[1], closed
        record = rig.hub.scout("bad")
        assert record is not None and record.status == "dropped"
        assert reason in record.logs[-1].message
        assert [r.scout_id for r in rig.hub.connected] == ["good"] and good.closed is None

    run_with_rig(tmp_path, body)


def test_more_than_500_frames_a_second_drop_the_scout(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        link = await rig.join("chatty")
        for nonce in range(600):
            link.say({"type": "pong", "nonce": nonce})
        assert await link.wait_closed() == (4008, "more than 500 frames a second")

    run_with_rig(tmp_path, body)


def test_a_reconnect_replaces_the_old_connection_and_keeps_the_figures(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        first = await rig.join("s1")
        record = rig.hub.scout("s1")
        assert record is not None
        record.tasks_completed = 7
        second = await rig.join("s1")
        assert await first.wait_closed() == (4010, "replaced by a new connection with this id")
        await rig.settle()
        assert rig.hub.scout("s1") is record and record.link is second
        assert record.tasks_completed == 7 and len(rig.hub.connected) == 1

    run_with_rig(tmp_path, body)


def test_pings_go_out_and_silent_scouts_are_dropped(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        lively, silent = await rig.join("lively"), await rig.join("silent")
        record = rig.hub.scout("silent")
        assert record is not None
        record.last_seen = time.monotonic() - 60
        rig.hub.sessions.ping(time.monotonic(), 7, interval_s=10)
        assert (await lively.next_frame("ping"))["nonce"] == 7
        assert await silent.wait_closed() == (4011, "silent for 30 s")

    run_with_rig(tmp_path, body)
