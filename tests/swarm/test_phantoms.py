"""Phantom sequences: golden tickets a scout cannot tell from live work.

The step on literal arrays first, then in process: a phantom's frames are framed as live
ones, and over at least 200 tickets honest scouts (exact, weaker, slow) are never banned
while cheaters (random, echoing, replaying, late) are banned within 20 tickets.
"""

import asyncio
import itertools
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shard.swarm import phantoms
from shard.swarm.golden_tickets import Completion
from shard.swarm.hub import HubSettings
from shard.swarm.phantoms import PhantomReplay, StepPace
from tests.swarm.fakes import DRAFT_MAX, N_VOCAB, WORK_K, FakeLink, Rig, run_with_rig

PROMPT = (1, 2, 3)
CONTINUATION = (10, 11, 12, 13, 14, 15, 16, 17, 18, 19)


def replay() -> PhantomReplay:
    return PhantomReplay(Completion(PROMPT, CONTINUATION), started_at=0.0)


def test_a_right_draft_is_accepted_up_to_a_step_and_scores_full() -> None:
    phantom = replay()  # decided: prompt + 10
    step = phantom.step((4, (11, 12, 13, 14, 15, 16)), per_step=4, now=0.01, deadline_s=1.0)
    assert (step.new_tokens, step.score, step.done) == ((11, 12, 13, 14, 15), 1.0, False)
    assert phantom.tokens == [1, 2, 3, 10, 11, 12, 13, 14, 15]
    # the rest of the same answer is still ahead at the next step
    step = phantom.step((4, (11, 12, 13, 14, 15, 16)), per_step=4, now=0.02, deadline_s=1.0)
    assert (step.new_tokens, step.score) == ((16, 17), 1.0)


def test_a_step_scores_whether_the_first_token_ahead_was_right() -> None:
    phantom = replay()
    step = phantom.step((4, (11, 99, 13)), per_step=4, now=0.01, deadline_s=1.0)
    assert step.new_tokens == (11, 12) and step.score == 1.0  # its acceptance, not its length
    step = phantom.step((6, (99, 13)), per_step=4, now=0.02, deadline_s=1.0)
    assert step.new_tokens == (13,) and step.score == 0.0


def test_an_answer_that_went_another_way_or_is_behind_offers_nothing() -> None:
    phantom = replay()
    phantom.step((4, (11,)), per_step=4, now=0.01, deadline_s=1.0)  # decided: ... 10 11 12
    for answer in ((4, (99, 12, 13)), (4, (11,)), (20, (13,))):
        before = phantom.decided
        step = phantom.step(answer, per_step=4, now=0.02, deadline_s=1.0)
        assert step.score is None and phantom.decided == before + 1


def test_nothing_ahead_for_a_whole_deadline_scores_zero_once_per_deadline() -> None:
    phantom = replay()
    scores = [phantom.step(None, 4, now, deadline_s=1.0).score for now in (0.5, 1.0, 1.5, 2.1)]
    assert scores == [None, 0.0, None, 0.0]


def test_a_scout_overtaken_by_each_step_scores_no_zero_while_its_drafts_arrive_new() -> None:
    """A scout no faster than the oracle drafts a token ahead, and the phantom passes it
    before its next step: it kept offering, so its deadlines are not scored 0. An echo of
    decided tokens, or a draft that went another way, is no offer (a wrong token ahead is
    scored 0 at the step)."""
    phantom = replay()  # decided: 10
    scores = []
    for tick in range(1, 31):  # 3 s of steps 0.1 s apart
        now = tick / 10
        decided = phantom.decided
        told = 3 + decided
        phantom.arrived((told, (CONTINUATION[decided],)), told, now - 0.05)  # new on arrival
        phantom.arrived((3, CONTINUATION[:decided]), told, now - 0.04)  # an echo is no offer
        scores.append(phantom.step(None, 4, now, deadline_s=1.0).score)  # it was overtaken
        if phantom.decided >= len(CONTINUATION) - 1:
            break
    assert 0.0 not in scores

    echoing = replay()
    for now in (0.5, 0.9):
        told = 3 + echoing.decided
        echoing.arrived((3, CONTINUATION[: echoing.decided]), told, now)
        echoing.arrived((3, (99, 11)), told, now)  # went another way: nothing ahead
    assert echoing.step(None, 4, 1.0, deadline_s=1.0).score == 0.0


def test_an_overtaken_draft_is_scored_on_the_first_token_it_was_never_sent() -> None:
    """A scout slower than the oracle answers after the phantom has decided past it (the
    dispatch sends no new work while an answer is owed): nothing is ahead, yet its token at
    the first position it was never sent is a prediction, scored when it arrives (and, when
    right, an offer: no zero at the deadline). One that went another way before, or covers
    only positions it was sent, predicts nothing; each position is scored once."""

    def overtaken(
        answer: tuple[int, tuple[int, ...]], told: int
    ) -> tuple[float | None, float | None, float | None]:
        phantom = replay()  # decided: 1, the scout was sent the prompt and that one
        for now in (0.1, 0.2, 0.3):
            phantom.step(None, 4, now, deadline_s=1.0)  # decided: 4, nothing sent since
        arrival = phantom.arrived(answer, told, 0.9)
        again = phantom.arrived(answer, told, 0.95)
        return arrival, again, phantom.step(None, 4, 1.2, deadline_s=1.0).score

    assert overtaken((4, CONTINUATION[1:3]), told=4) == (1.0, None, None)  # right: no zero
    assert overtaken((4, (CONTINUATION[2],)), told=4) == (0.0, None, 0.0)  # wrong
    assert overtaken((4, (99, CONTINUATION[2])), told=5) == (None, None, 0.0)  # another way
    assert overtaken((4, CONTINUATION[1:3]), told=6) == (None, None, 0.0)  # it was sent both


def test_the_last_token_ends_the_phantom() -> None:
    phantom = replay()
    step = phantom.step((4, CONTINUATION[1:]), per_step=20, now=0.01, deadline_s=1.0)
    assert step.done and phantom.tokens == list(PROMPT + CONTINUATION)


def test_the_pace_follows_live_steps_and_ignores_idle_gaps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(phantoms, "_IDLE_GAP_S", 1.0)
    pace = StepPace()
    for step in range(40):
        pace.step_seen(step * 0.02)
    settled = pace.seconds
    assert settled == pytest.approx(0.02, abs=0.001)
    pace.step_seen(30.0)  # the engine was idle: not a step's length
    assert pace.seconds == settled


# -- in process ------------------------------------------------------------------------------


class Truth:
    """The completions the test gave the ticket book, to play honest scouts with."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.continuations: list[tuple[int, ...]] = []

    def fresh(self, rig: Rig) -> None:
        continuation = tuple(self.rng.randrange(100, N_VOCAB) for _ in range(30))
        self.continuations.append(continuation)
        rig.hub.tickets.book.completions.append(Completion(PROMPT, continuation))

    def next_tokens(self, tokens: list[int], k: int) -> list[int]:
        """What the oracle wrote after `tokens` (empty for a live sequence)."""
        told = tuple(tokens[len(PROMPT) :])
        for continuation in self.continuations:
            if continuation[: len(told)] == told:
                return list(continuation[len(told) : len(told) + k])
        return []


Strategy = Callable[[list[int], int, Truth, dict[int, int]], list[int]]


def exact(tokens: list[int], k: int, truth: Truth, memory: dict[int, int]) -> list[int]:
    return truth.next_tokens(tokens, k)


def weaker(tokens: list[int], k: int, truth: Truth, memory: dict[int, int]) -> list[int]:
    """A smaller model: each token right 60% of the time, guessing after a miss."""
    right, drafted = truth.next_tokens(tokens, k), []
    for token in right:
        drafted.append(token if truth.rng.random() < 0.6 else truth.rng.randrange(N_VOCAB))
    return drafted


def random_tokens(tokens: list[int], k: int, truth: Truth, memory: dict[int, int]) -> list[int]:
    return [truth.rng.randrange(N_VOCAB) for _ in range(k)]


def echoing(tokens: list[int], k: int, truth: Truth, memory: dict[int, int]) -> list[int]:
    return tokens[-k:]


def replaying(tokens: list[int], k: int, truth: Truth, memory: dict[int, int]) -> list[int]:
    """Remembers which token followed which in everything it was sent, and replays it."""
    for before, after in itertools.pairwise(tokens):
        memory[before] = after
    drafted: list[int] = []
    last = tokens[-1]
    while len(drafted) < k and last in memory:
        last = memory[last]
        drafted.append(last)
    return drafted


def late(tokens: list[int], k: int, truth: Truth, memory: dict[int, int]) -> list[int]:
    """Copies only what was already decided (from a client's stream): nothing ahead."""
    return []


async def play(
    rig: Rig, link: FakeLink, strategy: Strategy, truth: Truth, slow: bool = False
) -> None:
    """Answer every work frame as `strategy` says (a slow scout answers with nothing first
    and streams its draft a moment later, protocol 2)."""
    sequences: dict[str, list[int]] = {}
    memory: dict[int, int] = {}
    while link.closed is None:
        try:
            frame = await asyncio.wait_for(link.frames.get(), 0.5)
        except TimeoutError:
            continue
        if frame["type"] == "cancel":
            sequences.pop(frame["seq"], None)
        if frame["type"] != "work":
            continue
        tokens = sequences.setdefault(frame["seq"], [])
        del tokens[frame["position"] :]
        tokens.extend(frame["tokens"])
        drafted = strategy(tokens, frame["k"], truth, memory)
        if slow:
            link.answer(frame, [])
            await asyncio.sleep(0.005)
        link.answer(frame, drafted)


async def run_tickets_until(
    rig: Rig, link: FakeLink, strategy: Strategy, count: int, slow: bool = False
) -> tuple[int, bool]:
    """Live sequences start phantoms (rate 1.0) until `count` tickets are scored or the key
    is banned; (tickets scored, banned)."""
    truth = Truth(random.Random(7))
    player = asyncio.create_task(play(rig, link, strategy, truth, slow))
    live = 0
    try:
        while True:
            reputation = rig.hub.reputation(rig.user.id)
            if reputation.banned_at is not None or reputation.tickets >= count:
                return reputation.tickets, reputation.banned_at is not None
            if not rig.hub.load().get("honest", 0) and not rig.hub.load().get("cheat", 0):
                if not rig.hub.tickets.book.completions:
                    truth.fresh(rig)
                live += 1
                rig.step(f"live{live:012d}", [1, 2, 3])  # the scout is given a live sequence
                rig.end(f"live{live:012d}")
            await asyncio.sleep(0.01)
    finally:
        player.cancel()


FAST = HubSettings(golden_ticket_rate=1.0, deadline_ms=100)


@pytest.fixture(autouse=True)
def quick_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phantoms, "DEFAULT_STEP_S", 0.004)
    monkeypatch.setattr(phantoms, "START_DELAY_S", 0.01)
    monkeypatch.setattr(phantoms, "_IDLE_GAP_S", 0.0)  # the test's live steps set no pace


def test_a_phantom_is_framed_as_live_work(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        rig.give_tickets(CONTINUATION * 3)
        link = await rig.join("s1", rig.user, version=2)
        rig.hub.dispatch.pace.seconds = 0.2  # the answer below comes before the first step
        rig.step("0123456789abcdef", [1, 2, 3, 4])
        live = await link.next_frame()
        first = await link.next_frame()
        assert live["seq"] == "0123456789abcdef"
        assert re.fullmatch(r"[0-9a-f]{16}", first["seq"]) and first["seq"] != live["seq"]
        assert (first["position"], first["tokens"]) == (0, [*PROMPT, CONTINUATION[0]])
        assert (
            (first["k"], first["deadline_ms"])
            == (live["k"], live["deadline_ms"])
            == (
                WORK_K,
                100,
            )
        )
        told = list(first["tokens"])
        link.answer(first, list(CONTINUATION[1:3]))  # two right: it moves 3 at its step
        second = await link.next_frame()
        assert second["seq"] == first["seq"] and second["position"] == len(told)
        assert second["tokens"] == list(CONTINUATION[1:4])
        told += second["tokens"]
        rig.hub.dispatch.pace.seconds = 0.004
        link.answer(second, [])
        while True:  # nothing ahead from here: one token a step, and a frame each step
            frame: dict[str, Any] = await asyncio.wait_for(link.frames.get(), 5)
            if frame["type"] == "cancel":
                break
            assert frame["position"] == len(told)
            told += frame["tokens"]
            link.answer(frame, [])
        assert frame["seq"] == first["seq"] and told == [*PROMPT, *CONTINUATION * 3]
        reputation = rig.hub.reputation(rig.user.id)
        assert reputation.tickets >= 1 and reputation.ticket_score_sum == 1.0

    run_with_rig(tmp_path, body, FAST)


@pytest.mark.parametrize(
    ("strategy", "slow"),
    [(exact, False), (weaker, False), (exact, True)],
    ids=["exact", "weaker", "slow"],
)
def test_honest_scouts_pass_200_tickets(tmp_path: Path, strategy: Strategy, slow: bool) -> None:
    async def body(rig: Rig) -> None:
        link = await rig.join("honest", rig.user, version=2)
        tickets, banned = await run_tickets_until(rig, link, strategy, 200, slow)
        assert tickets >= 200 and not banned and link.closed is None
        golden = rig.hub.reputation(rig.user.id).golden
        assert golden is not None and golden > (0.9 if strategy is exact else 0.4)

    run_with_rig(tmp_path, body, FAST)


@pytest.mark.parametrize("strategy", [random_tokens, echoing, replaying, late])
def test_cheaters_are_banned_within_20_tickets(tmp_path: Path, strategy: Strategy) -> None:
    async def body(rig: Rig) -> None:
        link = await rig.join("cheat", rig.user, version=2)
        tickets, banned = await run_tickets_until(rig, link, strategy, 200)
        assert banned and tickets <= 20
        code, reason = await link.wait_closed()
        assert code == 4003 and "golden tickets" in reason

    run_with_rig(tmp_path, body, FAST)


def test_the_ticket_book_reveals_each_completion_only_forward() -> None:
    from shard.swarm.golden_tickets import TicketBook

    book = TicketBook()
    book.completions.append(Completion(PROMPT, tuple(range(10, 40))))
    rng, cuts = random.Random(0), []
    while (ticket := book.draw(DRAFT_MAX, rng)) is not None:
        cuts.append(len(ticket.context) - len(PROMPT))
    assert cuts == sorted(set(cuts)) and len(cuts) >= 8
    assert book.take_fresh() is None  # used up, so no phantom gets it
