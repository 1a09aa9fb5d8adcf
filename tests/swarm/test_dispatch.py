"""Work out and drafts in, in process: what reaches the engine's draft sink, which drafts
drop their scout, deadlines, and scoring the engine's verdicts."""

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shard.engine.types import DraftOutcome, ScoutDraft
from shard.swarm.hub import HubSettings
from tests.swarm.fakes import N_VOCAB, WORK_K, Rig, run_with_rig


def test_a_valid_draft_reaches_the_engine_and_new_tokens_follow(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        link = await rig.join("s1")
        rig.step("seq", [1, 2, 3])
        work = await link.next_frame()
        assert work == {
            "type": "work",
            "seq": "seq",
            "position": 0,
            "tokens": [1, 2, 3],
            "k": WORK_K,
            "deadline_ms": 1000,
        }
        rig.step("seq", [4], start=3)  # work is out: the new token waits for the answer
        assert link.pending() == []
        link.answer(work, [4, 5])
        following = await link.next_frame()  # the answer frees it for the token it missed
        assert (following["position"], following["tokens"]) == (3, [4])
        assert rig.engine.drafts.latest("seq") == ScoutDraft("s1", 3, (4, 5))
        record = rig.hub.scout("s1")
        assert record is not None and record.tasks_completed == 1
        assert record.avg_latency_ms is not None and rig.hub.load() == {"s1": 1}

        rig.end("seq")
        assert (await link.next_frame("cancel"))["seq"] == "seq"
        assert rig.hub.load() == {"s1": 0}

    run_with_rig(tmp_path, body)


def test_with_speculation_off_scouts_get_no_work(tmp_path: Path) -> None:
    """`--draft-max 0`: no draft is ever verified, so a scout is sent nothing to draft (and
    so can earn nothing)."""

    async def body(rig: Rig) -> None:
        assert rig.engine.status is not None
        rig.engine.status = replace(rig.engine.status, draft_max=0)
        link = await rig.join("s1")
        rig.step("seq", [1, 2, 3])
        rig.step("seq", [4], start=3)
        await rig.settle()
        assert link.pending() == []
        record = rig.hub.scout("s1")
        assert record is not None and record.draft_tokens == 0

    run_with_rig(tmp_path, body)


@pytest.mark.parametrize(
    ("draft", "reason"),
    [
        ({"position": 5, "tokens": [1]}, "draft for position 5, work was for 3"),
        ({"tokens": [1] * (WORK_K + 1)}, f"{WORK_K + 1} draft tokens, {WORK_K} asked"),
        ({"tokens": [7, N_VOCAB]}, "draft token id outside the vocabulary"),
    ],
    ids=["wrong-position", "too-many-tokens", "outside-vocabulary"],
)
def test_a_draft_that_cannot_be_honest_drops_the_scout_before_the_engine_sees_it(
    tmp_path: Path, draft: dict[str, Any], reason: str
) -> None:
    async def body(rig: Rig) -> None:
        link = await rig.join("s1")
        rig.step("seq", [1, 2, 3])
        work = await link.next_frame()
        link.answer(work, draft["tokens"], draft.get("position"))
        assert await link.wait_closed() == (4011, reason)
        assert rig.engine.drafts.latest("seq") is None
        record = rig.hub.scout("s1")
        assert record is not None and record.status == "dropped"
        second = await rig.join("s2")  # the sequence is free for another scout
        rig.step("seq", [4], start=3)
        handed = await second.next_frame()
        assert (handed["seq"], handed["position"], handed["tokens"]) == ("seq", 0, [1, 2, 3, 4])

    run_with_rig(tmp_path, body)


def test_a_version_2_scout_streams_more_of_its_answer(tmp_path: Path) -> None:
    """Protocol 2: later frames for the position last answered carry that answer and more;
    each replaces the draft the engine sees, even after newer work went out."""

    async def body(rig: Rig) -> None:
        link = await rig.join("s2", version=2)
        rig.step("seq", [1, 2, 3])
        work = await link.next_frame()
        link.answer(work, [])  # nothing drafted yet: answered at once
        await rig.settle()
        assert rig.engine.drafts.latest("seq") is None
        link.answer(work, [4])
        link.answer(work, [4, 5, 6])
        await rig.settle()
        assert rig.engine.drafts.latest("seq") == ScoutDraft("s2", 3, (4, 5, 6))
        rig.step("seq", [4], start=3)  # newer work is out; the old answer still streams
        newer = await link.next_frame()
        link.answer(work, [4, 5, 6, 7])
        await rig.settle()
        assert rig.engine.drafts.latest("seq") == ScoutDraft("s2", 3, (4, 5, 6, 7))
        link.answer(newer, [5, 6, 7, 8])
        await rig.settle()
        assert rig.engine.drafts.latest("seq") == ScoutDraft("s2", 4, (5, 6, 7, 8))
        record = rig.hub.scout("s2")
        assert record is not None and record.tasks_completed == 2 and record.unsolicited == 0
        link.answer(newer, [5, 9])  # not an extension of what it sent
        assert await link.wait_closed() == (4011, "a streamed draft must extend the one before it")

    run_with_rig(tmp_path, body)


def test_a_version_1_scout_answers_each_work_once(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        link = await rig.join("s1", version=1)
        rig.step("seq", [1, 2, 3])
        work = await link.next_frame()
        link.answer(work, [4])
        link.answer(work, [4, 5])  # no streaming in version 1: work it was not given
        await rig.settle()
        assert rig.engine.drafts.latest("seq") == ScoutDraft("s1", 3, (4,))
        record = rig.hub.scout("s1")
        assert record is not None and record.unsolicited == 1

    run_with_rig(tmp_path, body)


def test_drafts_for_work_never_given_are_tolerated_then_drop_the_flooder(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        link = await rig.join("flood")
        for number in range(20):
            link.say({"type": "draft", "seq": f"nope{number}", "position": 1, "tokens": [1]})
        await rig.settle()
        assert link.closed is None
        link.say({"type": "draft", "seq": "nope", "position": 1, "tokens": [1]})
        assert await link.wait_closed() == (4011, "drafts for work it was never given (flooding)")

    run_with_rig(tmp_path, body)


def test_answers_for_sequences_that_just_ended_are_not_flooding(tmp_path: Path) -> None:
    """Work is often out when a request ends; the answer then crosses the cancel."""

    async def body(rig: Rig) -> None:
        link = await rig.join("busy")
        for number in range(30):  # more than the flooding allowance
            key = f"request-{number}"
            rig.step(key, [1, 2, 3])
            work = await link.next_frame()
            rig.engine.drafts.offer(key, ScoutDraft("busy", 3, (4,)))  # posted, not yet read
            rig.end(key)
            link.answer(work, [4, 5])
            await rig.settle()
            assert rig.engine.drafts.latest(key) is None  # nothing left in the sink
        assert link.closed is None
        record = rig.hub.scout("busy")
        assert record is not None and record.unsolicited == 0

    run_with_rig(tmp_path, body, HubSettings(golden_ticket_rate=0.0))


def test_missed_deadlines_count_and_too_many_in_a_row_drop_the_scout(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        link = await rig.join("slow")
        record = rig.hub.scout("slow")
        assert record is not None
        rig.step("seq", [1, 2])
        first = await link.next_frame()
        rig.expire_deadlines()
        assert (record.misses, record.tasks_failed) == (1, 1)
        assert "missed the 1000 ms deadline" in record.logs[-1].message
        link.answer(first, [3])  # late: ignored, and proof the scout is alive
        await rig.settle()
        assert record.misses == 0 and record.logs[-1].message == "late draft ignored"
        assert rig.engine.drafts.latest("seq") is None and link.closed is None

        for start in (2, 3):
            rig.step("seq", [start + 1], start=start)
            await link.next_frame()
            rig.expire_deadlines()
        assert await link.wait_closed() == (4011, "missed 2 deadlines in a row")
        assert record.tasks_failed == 3

    run_with_rig(tmp_path, body, HubSettings(max_misses=2, golden_ticket_rate=0.0))


def test_timely_verdicts_credit_the_key_and_a_useless_scout_is_dropped_once_judged(
    tmp_path: Path,
) -> None:
    async def body(rig: Rig) -> None:
        good, bad = await rig.join("good", rig.admin), await rig.join("bad", rig.user)
        rig.hub.on_reports(
            [
                DraftOutcome("scout", "good", proposed=10, accepted=9),
                DraftOutcome("scout", "good", proposed=50, accepted=50, timely=False),
                DraftOutcome("scout", "bad", proposed=63, accepted=0, timely=False),
                DraftOutcome("ngram", None, proposed=5, accepted=5),
            ]
        )
        await rig.settle()
        assert bad.closed is None  # not judged before 64 tokens
        rig.hub.on_reports([DraftOutcome("scout", "bad", proposed=1, accepted=0)])
        assert await bad.wait_closed() == (4011, "drafts accepted 0.0% of the time")
        assert good.closed is None
        reputation = rig.hub.reputation(rig.admin.id)
        assert (reputation.draft_tokens, reputation.accepted_tokens) == (10, 9)  # timely only
        assert rig.hub.reputation(rig.user.id).live == 0.0

    run_with_rig(tmp_path, body)


def test_sequences_go_to_the_least_loaded_scout_and_resync_resends_all(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        a, b = await rig.join("a"), await rig.join("b")
        rig.step("one", [1, 2])
        rig.step("two", [3, 4])
        assert rig.hub.load() == {"a": 1, "b": 1}
        to_a, to_b = await a.next_frame(), await b.next_frame()
        assert {to_a["seq"], to_b["seq"]} == {"one", "two"}

        a.answer(to_a, [9])
        rig.step(to_a["seq"], [9], start=2)
        assert (await a.next_frame())["position"] == 2
        a.say({"type": "resync", "seq": to_a["seq"]})
        again = await a.next_frame()
        assert (again["position"], len(again["tokens"])) == (0, 3)

        a.vanish()  # its sequence goes to the other scout at the next step
        await rig.settle()
        rig.step(to_a["seq"], [5], start=3)
        moved = await b.next_frame()
        assert (moved["seq"], moved["position"], len(moved["tokens"])) == (to_a["seq"], 0, 4)

    run_with_rig(tmp_path, body)


def test_no_work_while_the_engine_reloads(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        link = await rig.join("s1")
        rig.engine.ready = False
        rig.step("seq", [1, 2])
        await rig.settle()
        assert link.pending() == []

    run_with_rig(tmp_path, body)
