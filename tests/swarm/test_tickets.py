"""Golden tickets, in process: scored into the key's reputation whether answered right,
wrong, late or not at all, and a ban that closes every scout of the key and outlives it."""

import asyncio
from pathlib import Path

import pytest

from shard.swarm import golden_tickets
from shard.swarm.errors import TicketsNotReady
from shard.swarm.hub import HubSettings
from shard.swarm.tickets import TicketResult
from tests.swarm.fakes import WORK_K, FakeLink, Rig, run_with_rig

CONTINUATION = tuple(range(10, 40))
PROMPT_LENGTH = 3


def expected_for(work: dict[str, object]) -> list[int]:
    """What the oracle wrote after the ticket's context (an honest scout's draft)."""
    tokens = work["tokens"]
    assert isinstance(tokens, list) and isinstance(work["k"], int)
    cut = len(tokens) - PROMPT_LENGTH
    return list(CONTINUATION[cut : cut + work["k"]])


async def run_answering(
    rig: Rig, link: FakeLink, scout_id: str, count: int, wrong: bool = False
) -> list[TicketResult]:
    running = asyncio.create_task(rig.hub.run_tickets(scout_id, count))
    while not running.done():
        next_work = asyncio.create_task(link.next_frame())
        await asyncio.wait({running, next_work}, return_when=asyncio.FIRST_COMPLETED)
        if not next_work.done():  # the run ended early (a ban)
            next_work.cancel()
            break
        right = expected_for(next_work.result())
        link.answer(next_work.result(), [token + 1 for token in right] if wrong else right)
    return await running


def test_an_honest_scout_scores_full_marks(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        rig.give_tickets(CONTINUATION)
        link = await rig.join("honest")
        results = await run_answering(rig, link, "honest", 5)
        assert [result.score for result in results] == [1.0] * 5
        assert all(result.latency_ms is not None for result in results)
        assert all(0 < len(result.expected) <= WORK_K for result in results)
        reputation = rig.hub.reputation(rig.admin.id)
        assert (reputation.tickets, reputation.golden) == (5, 1.0)
        record = rig.hub.scout("honest")
        assert record is not None and "golden ticket scored 1.00" in record.logs[-1].message

    run_with_rig(tmp_path, body)


def test_silence_scores_zero_and_the_late_answer_is_ignored(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        rig.give_tickets(CONTINUATION)
        link = await rig.join("silent")
        running = asyncio.create_task(rig.hub.run_tickets("silent", 1))
        work = await link.next_frame()
        rig.expire_deadlines()
        [result] = await running
        assert (result.score, result.latency_ms, result.drafted) == (0.0, None, ())
        assert (await link.next_frame("cancel"))["seq"] == work["seq"]
        link.answer(work, expected_for(work))  # too late: not flooding, not scored again
        await rig.settle()
        record = rig.hub.scout("silent")
        assert record is not None and record.unsolicited == 0 and link.closed is None
        assert rig.hub.reputation(rig.admin.id).tickets == 1

    run_with_rig(tmp_path, body)


def test_a_draft_at_the_wrong_place_scores_zero(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        rig.give_tickets(CONTINUATION)
        link = await rig.join("replayer")
        running = asyncio.create_task(rig.hub.run_tickets("replayer", 1))
        work = await link.next_frame()
        link.answer(work, expected_for(work), position=1)
        [result] = await running
        assert result.score == 0.0 and result.latency_ms is not None
        assert link.closed is None  # a bad ticket answer costs reputation, not the link

    run_with_rig(tmp_path, body)


def test_a_ban_closes_every_scout_of_the_key_and_is_stored(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        rig.give_tickets(CONTINUATION)
        cheat, sibling = await rig.join("cheat", rig.user), await rig.join("sibling", rig.user)
        bystander = await rig.join("bystander", rig.admin)
        results = await run_answering(rig, cheat, "cheat", 5, wrong=True)
        assert [result.score for result in results] == [0.0] * 3  # cut off once banned
        for link in (cheat, sibling):
            code, reason = await link.wait_closed()
            assert code == 4003 and reason.startswith("banned: reputation 0.00 below 0.3")
        assert bystander.closed is None

        banned = await asyncio.to_thread(rig.hub.trust.banned)
        assert [reputation.key_id for reputation in banned] == [rig.user.id]
        stored = rig.records.reputation(rig.user.id)
        assert stored.tickets == 3 and stored.banned_until is None  # ban_seconds=0: for good

        again = await rig.connect("new-id", rig.user)
        code, reason = await again.wait_closed()
        assert code == 4003 and reason.startswith("banned for good")

        await asyncio.to_thread(rig.hub.trust.unban, rig.user.id)
        await rig.join("new-id", rig.user)

    run_with_rig(tmp_path, body, min_tickets=3, ban_seconds=0)


def test_phantoms_go_out_with_ordinary_work(tmp_path: Path) -> None:
    """A scout given a live sequence is given a phantom too (at the rate; one at a time),
    a little later; the phantoms themselves are proven in test_phantoms.py."""

    async def body(rig: Rig) -> None:
        rig.give_tickets(CONTINUATION)
        rig.give_tickets(CONTINUATION)
        link = await rig.join("s1")
        rig.step("seq", [1, 2, 3])
        first, second = await link.next_frame(), await link.next_frame()
        assert first["seq"] == "seq" and second["seq"] != "seq"
        assert second["tokens"] == [1, 2, 3, CONTINUATION[0]]
        rig.step("other", [1])  # its phantom is still running: no second one
        await asyncio.sleep(0.1)
        assert {frame["seq"] for frame in link.pending()} <= {"other", second["seq"]}
        assert len(rig.hub.tickets.book.completions) == 1

    run_with_rig(tmp_path, body, HubSettings(golden_ticket_rate=1.0))


def test_no_tickets_without_completions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(golden_tickets, "_IDLE_FOR_S", 0.0)
    monkeypatch.setattr(golden_tickets, "_IDLE_POLL_S", 0.0)

    async def body(rig: Rig) -> None:
        await rig.join("s1")  # the fake engine cannot generate: filling gives up
        with pytest.raises(TicketsNotReady):
            await rig.hub.run_tickets("s1", 1)

    run_with_rig(tmp_path, body)


def test_a_streamed_ticket_is_scored_on_what_arrived_by_its_deadline(tmp_path: Path) -> None:
    """Protocol 2: an answer may come in parts; the ticket scores the last part that came
    before the deadline (and a complete answer at once)."""

    async def body(rig: Rig) -> None:
        rig.give_tickets(CONTINUATION)
        link = await rig.join("streamer", version=2)
        running = asyncio.create_task(rig.hub.run_tickets("streamer", 1))
        work = await link.next_frame()
        right = expected_for(work)
        link.answer(work, [])
        link.answer(work, right[:2])
        await rig.settle()
        assert not running.done()  # it waits for more, until the deadline
        rig.expire_deadlines()
        (result,) = await running
        assert result.drafted == tuple(right[:2])
        assert result.score == 1.0  # right as far as it got: slow, not wrong
        assert result.latency_ms is not None

    run_with_rig(tmp_path, body)
