"""Golden tickets: work whose right answer the oracle already knows.

The oracle completes a built-in set of prompts itself, greedily, when it has nothing else to
do (never from users' data). A ticket cuts one of those completions at a random point: the
scout gets the text up to the cut as an ordinary work frame, and its draft is scored against
what the oracle wrote next. Score = length of the matching draft prefix / k.
"""

import asyncio
import logging
import random
import secrets
from dataclasses import dataclass

from shard.engine.types import ChatMessage, GenerationRequest, SamplingParams
from shard.swarm.engine_handle import SwarmEngine

log = logging.getLogger(__name__)

PROMPTS = (
    "Explain how a bicycle works.",
    "Write a short story about a lighthouse keeper.",
    "List the planets of the solar system in order.",
    "What is photosynthesis?",
    "Describe the water cycle.",
    "Give three tips for learning a new language.",
    "Write a haiku about autumn.",
    "How does a refrigerator keep food cold?",
    "Summarise the rules of chess.",
    "What are prime numbers? Give examples.",
    "Describe a busy market in the morning.",
    "Explain why the sky is blue.",
)
_COMPLETION_TOKENS = 48
_MIN_TARGET = 4
_IDLE_FOR_S = 2.0
_IDLE_POLL_S = 0.25


@dataclass(frozen=True)
class Completion:
    """One built-in prompt as token ids, and the oracle's own greedy continuation."""

    prompt: tuple[int, ...]
    continuation: tuple[int, ...]


@dataclass(frozen=True)
class Ticket:
    """A work frame's worth of context and the tokens that must follow it."""

    sequence_key: str
    context: tuple[int, ...]
    expected: tuple[int, ...]

    def score(self, drafted: list[int]) -> float:
        """Matching prefix of the draft over the number of tokens asked for."""
        matched = 0
        for got, want in zip(drafted, self.expected, strict=False):
            if got != want:
                break
            matched += 1
        return matched / len(self.expected)


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
    """The oracle's completions of the built-in prompts, made while it is idle."""

    def __init__(self) -> None:
        self.completions: list[Completion] = []
        self._filling: asyncio.Task[None] | None = None
        self._first = asyncio.Event()

    @property
    def ready(self) -> bool:
        return any(len(c.continuation) > _MIN_TARGET for c in self.completions)

    def fill_when_idle(self, engine: SwarmEngine) -> None:
        """Start completing the prompts in the background (once)."""
        if self._filling is None or (self._filling.done() and not self.completions):
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
        pending = list(PROMPTS)
        while pending:
            await _wait_idle(engine)
            try:
                completion = await self._complete(engine, pending[0])
            except Exception:  # a restarting engine: give up; the next scout starts again
                log.debug("golden ticket prompt failed", exc_info=True)
                return
            if completion is not None:
                self.completions.append(completion)
                if self.ready:
                    self._first.set()
                pending.pop(0)

    async def _complete(self, engine: SwarmEngine, prompt: str) -> Completion | None:
        """The oracle's greedy completion; None when a user's request arrived meanwhile (the
        completion is dropped at once, so tickets never slow users down for long)."""
        request = GenerationRequest(
            request_id=f"golden-{secrets.token_hex(6)}",
            messages=(ChatMessage("user", prompt),),
            sampling=SamplingParams(seed=0, temperature=0.0),
            max_tokens=_COMPLETION_TOKENS,
            token_ids=True,
        )
        continuation: list[int] = []
        async with engine.generate(request) as generation:
            async for delta in generation.deltas():
                if engine.in_flight > 1:
                    return None
                continuation.extend(delta.token_ids)
            return Completion(generation.prompt_ids, tuple(continuation))

    def draw(self, k: int, rng: random.Random) -> Ticket | None:
        """A ticket asking for up to k tokens, cut at a random point of a completion."""
        usable = [c for c in self.completions if len(c.continuation) > _MIN_TARGET]
        if not usable:
            return None
        completion = rng.choice(usable)
        cut = rng.randrange(0, len(completion.continuation) - _MIN_TARGET)
        expected = completion.continuation[cut : cut + k]
        context = completion.prompt + completion.continuation[:cut]
        return Ticket(secrets.token_hex(8), context, expected)
