"""Golden tickets: work whose right answer the oracle already knows.

While idle, the oracle writes the tickets' text itself (never from users' data): it first asks
itself, sampling with a fresh random seed, for a question a user might ask about a topic, then
answers that question greedily. Neither the instruction nor the topic is ever sent; a scout
only sees the question and the answer, as it would see a user's chat. So the content is new
each time and cannot be looked up in this file.

A completion's tokens are only ever revealed forward: a ticket cut from it asks for tokens no
earlier ticket showed, and a phantom sequence (`phantoms.py`) takes a completion nobody has
seen and uses it up. A scout that remembers what it was sent learns nothing it is asked later.

A single ticket (`draw`) asks for the tokens after a cut: Score = length of the matching draft
prefix / tokens drafted by the deadline (at most k; 0 for none). Phantom sequences score
their steps themselves.
"""

import asyncio
import logging
import random
import secrets
from dataclasses import dataclass

from shard.engine.types import ChatMessage, GenerationRequest, SamplingParams
from shard.swarm.engine_handle import SwarmEngine

log = logging.getLogger(__name__)

TOPICS = (
    "cooking",
    "gardening",
    "history",
    "physics",
    "chemistry",
    "biology",
    "astronomy",
    "music",
    "painting",
    "poetry",
    "travel",
    "money",
    "health",
    "sport",
    "programming",
    "databases",
    "networks",
    "mathematics",
    "geography",
    "weather",
    "animals",
    "cars",
    "trains",
    "cities",
    "languages",
    "law",
    "philosophy",
    "films",
    "books",
    "games",
    "architecture",
    "electricity",
    "the ocean",
    "farming",
    "medicine",
    "fashion",
    "photography",
    "economics",
    "education",
    "space travel",
    "computers",
    "birds",
)
_ASK = (
    "Write one question that a person might ask an assistant about {topic}. "
    "Write only the question."
)
_QUESTION_TOKENS = 40
_COMPLETION_TOKENS = 64
_POOL = 6
"""Unused completions kept ready; the oracle writes more while idle as they are used up."""
_MAX_SKIP = 2
"""A drawn ticket's cut is at most this far past the completion's last one."""
_MIN_TARGET = 4
_IDLE_FOR_S = 2.0
_IDLE_POLL_S = 0.25


@dataclass
class Completion:
    """A prompt the oracle wrote, as token ids, and its own greedy continuation."""

    prompt: tuple[int, ...]
    continuation: tuple[int, ...]
    cursor: int = 0
    """Where the next ticket may cut: tokens before it have been shown to a scout."""

    @property
    def usable(self) -> bool:
        return len(self.continuation) - self.cursor > _MIN_TARGET


@dataclass(frozen=True)
class Ticket:
    """A work frame's worth of context and the tokens that must follow it."""

    sequence_key: str
    context: tuple[int, ...]
    expected: tuple[int, ...]

    def score(self, drafted: list[int]) -> float:
        """Matching prefix of the draft over the tokens drafted (of the k asked for), 0 for
        none: a scout too slow to draft all k by the deadline is slow, not wrong (its
        latency says so), as phantoms score acceptance whatever the draft's length."""
        drafted = drafted[: len(self.expected)]
        matched = 0
        for got, want in zip(drafted, self.expected, strict=False):
            if got != want:
                break
            matched += 1
        return matched / len(drafted) if drafted else 0.0


async def _wait_idle(engine: SwarmEngine) -> None:
    """Until no request has been in flight for a while."""
    quiet_since = asyncio.get_running_loop().time()
    while True:
        await asyncio.sleep(_IDLE_POLL_S)
        now = asyncio.get_running_loop().time()
        if engine.in_flight:
            quiet_since = now
        elif now - quiet_since >= _IDLE_FOR_S:
            return


class TicketBook:
    """The oracle's own completions, written while it is idle, each revealed only forward."""

    def __init__(self) -> None:
        self.completions: list[Completion] = []
        self._filling: asyncio.Task[None] | None = None
        self._first = asyncio.Event()

    @property
    def ready(self) -> bool:
        return any(c.usable for c in self.completions)

    def fill_when_idle(self, engine: SwarmEngine) -> None:
        """Write completions in the background until the pool is full (again)."""
        idle = self._filling is None or self._filling.done()
        if idle and sum(c.usable for c in self.completions) < _POOL:
            self._filling = asyncio.create_task(self._fill(engine))

    async def wait_ready(self, timeout: float) -> bool:
        """Until the first completion is made (the rest follow while the oracle is idle), the
        filling gives up, or `timeout`."""
        if self._filling is not None and not self.ready:
            first = asyncio.ensure_future(self._first.wait())
            await asyncio.wait(
                {self._filling, first}, timeout=timeout, return_when="FIRST_COMPLETED"
            )
            first.cancel()
        return self.ready

    async def _fill(self, engine: SwarmEngine) -> None:
        rng = random.Random()
        while sum(c.usable for c in self.completions) < _POOL:
            await _wait_idle(engine)
            try:
                completion = await self._write(engine, rng)
            except Exception:  # a restarting engine: give up; the next scout starts again
                log.debug("golden ticket text failed", exc_info=True)
                return
            if completion is not None and completion.usable:
                self.completions.append(completion)
                self._first.set()
                ready = sum(c.usable for c in self.completions)
                log.info("golden ticket text written: %d ready", ready)

    async def _write(self, engine: SwarmEngine, rng: random.Random) -> Completion | None:
        """A question the oracle asks itself, sampled, and its greedy answer; None when a
        user's request arrived meanwhile (dropped at once, so tickets never slow users down
        for long)."""
        ask = _ASK.format(topic=rng.choice(TOPICS))
        sampled = SamplingParams(seed=rng.randrange(2**31), temperature=1.0)
        question = await self._generate(engine, ask, sampled, _QUESTION_TOKENS)
        if question is None:
            return None
        text = "".join(question[1]).strip()
        if not text:
            return None
        answer = await self._generate(
            engine, text, SamplingParams(seed=0, temperature=0.0), _COMPLETION_TOKENS
        )
        if answer is None:
            return None
        return Completion(answer[0], tuple(answer[2]))

    @staticmethod
    async def _generate(
        engine: SwarmEngine, prompt: str, sampling: SamplingParams, max_tokens: int
    ) -> tuple[tuple[int, ...], list[str], list[int]] | None:
        """Prompt ids, text pieces and token ids of one generation; None when interrupted."""
        request = GenerationRequest(
            request_id=f"golden-{secrets.token_hex(6)}",
            messages=(ChatMessage("user", prompt),),
            sampling=sampling,
            max_tokens=max_tokens,
            token_ids=True,
            shown_to_scouts=False,  # a scout that drafted it would know the tickets
        )
        text: list[str] = []
        tokens: list[int] = []
        async with engine.generate(request) as generation:
            async for delta in generation.deltas():
                if engine.in_flight > 1:
                    return None
                text.append(delta.text)
                tokens.extend(delta.token_ids)
            return generation.prompt_ids, text, tokens

    def draw(self, k: int, rng: random.Random) -> Ticket | None:
        """A ticket asking for up to k tokens, cut a little past the last cut of a
        completion (never before it: those tokens were shown)."""
        usable = [c for c in self.completions if c.usable]
        if not usable:
            return None
        completion = rng.choice(usable)
        last = len(completion.continuation) - _MIN_TARGET
        cut = rng.randrange(completion.cursor, min(completion.cursor + _MAX_SKIP + 1, last))
        completion.cursor = cut + 1
        self._drop_used()
        expected = completion.continuation[cut : cut + k]
        context = completion.prompt + completion.continuation[:cut]
        return Ticket(secrets.token_hex(8), context, expected)

    def take_fresh(self) -> Completion | None:
        """A completion no scout has seen any of, for a phantom sequence to use up."""
        for index, completion in enumerate(self.completions):
            if completion.cursor == 0 and completion.usable:
                return self.completions.pop(index)
        return None

    def _drop_used(self) -> None:
        self.completions = [c for c in self.completions if c.usable]
