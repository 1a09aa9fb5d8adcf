"""The engine's one interface for the rest of the oracle, on the asyncio side: submit (and
cancel by leaving), status, the draft sink and the progress feed.

Handlers call `EngineClient.generate`; the engine thread's events come back through
`loop.call_soon_threadsafe`, once per decode step, and are routed to each request's queue.
Nothing outside the engine touches the engine thread's state.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from shard.engine.spec.scout_drafts import DraftSink
from shard.engine.types import (
    Admitted,
    ChoiceDelta,
    EngineEvent,
    EngineStatus,
    GenerationRequest,
    PredictionUsed,
    Progress,
    PromptCached,
    PromptLogprobs,
    Rejected,
)
from shard.engine.worker import Engine, EngineConfig, LoadModel, load_llama_model

log = logging.getLogger(__name__)

ProgressListener = Callable[[list[Progress]], None]
"""Called on the event loop with each step's sequence progress and draft outcomes."""


class QueueFullError(Exception):
    """More requests are in flight than the server runs plus its queue bound."""


class EngineNotReadyError(Exception):
    """The model is still loading, or failed to load."""


class RequestRejectedError(Exception):
    """The engine refused the request before generating (too long, bad ids, ...)."""

    def __init__(self, rejection: Rejected) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


class Generation:
    """A running request as the handler sees it: prompt size, then a stream of deltas."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.prompt_tokens = 0
        self.cached_tokens = 0
        """Prompt tokens that came from the prefix cache (known once the request starts)."""
        self.prompt_ids: tuple[int, ...] = ()
        self.prompt_text = ""
        """A legacy prompt as text (one given as token ids, as its tokens' pieces)."""
        self.prompt_logprobs: PromptLogprobs | None = None
        """When the request asked for them, known before its first delta."""
        self.queue: asyncio.Queue[EngineEvent] = asyncio.Queue()
        self.finished = False
        self.admitted_at = time.monotonic()
        self.first_token_at: float | None = None
        self.prediction_accepted = 0
        self.prediction_rejected = 0
        """Prediction tokens verification accepted and rejected, all choices (known once
        every choice has finished)."""

    async def deltas(self) -> AsyncIterator[ChoiceDelta]:
        """Every delta of every choice, in order, until all choices have finished."""
        open_choices = self.request.n
        while open_choices:
            event = await self.queue.get()
            if isinstance(event, Rejected):
                raise RequestRejectedError(event)
            if isinstance(event, PromptCached):
                self.cached_tokens = event.tokens
            if isinstance(event, PromptLogprobs):
                self.prompt_logprobs = event
            self._tally(event)
            if isinstance(event, ChoiceDelta):
                if self.first_token_at is None:
                    self.first_token_at = time.monotonic()
                if event.finish_reason is not None:
                    open_choices -= 1
                yield event
        while not self.queue.empty():  # what the engine said after the last delta, same step
            self._tally(self.queue.get_nowait())
        self.finished = True

    def _tally(self, event: EngineEvent) -> None:
        if isinstance(event, PredictionUsed):
            self.prediction_accepted += event.accepted
            self.prediction_rejected += event.rejected


class EngineClient:
    """Bounds what is in flight and connects handlers and the swarm to the engine thread."""

    def __init__(
        self, config: EngineConfig, max_queue: int, load_model: LoadModel = load_llama_model
    ) -> None:
        self.capacity = config.n_seq + max_queue
        self._loop = asyncio.get_running_loop()
        self._engine = Engine(config, self._deliver_threadsafe, self._report_threadsafe, load_model)
        self._generations: dict[str, Generation] = {}
        self._listeners: list[ProgressListener] = []
        self._stopped = False

    @property
    def status(self) -> EngineStatus | None:
        """The loaded engine's figures; None until the model has loaded."""
        return self._engine.status if self.ready else None

    @property
    def drafts(self) -> DraftSink:
        """Where scout drafts go; the engine reads them without ever waiting."""
        return self._engine.drafts

    def follow_progress(self, on: bool) -> None:
        """Have every step report sequences' new tokens (the swarm needs them while scouts
        are connected), or stop; draft outcomes are reported either way."""
        self._engine.progress.follow(on)

    def cede_threads(self, threads: int) -> None:
        """Scouts on this machine draft with this many CPU threads: decode with that many
        fewer, where the thread count was the default."""
        self._engine.cede_threads(threads)

    @property
    def threads(self) -> int:
        """CPU threads decoding now."""
        return self._engine.threads

    @property
    def in_flight(self) -> int:
        return len(self._generations)

    @property
    def sequences(self) -> tuple[int, int]:
        """(sequences decoding, requests queued for a sequence), as of the last step."""
        return self._engine.sequences

    async def start(self) -> None:
        """Start the engine thread and wait (without blocking the loop) for the model."""
        self._engine.start()
        await asyncio.to_thread(self._engine.ready.wait)
        if self._engine.load_error is not None:
            raise self._engine.load_error

    @property
    def ready(self) -> bool:
        loaded = self._engine.ready.is_set() and self._engine.load_error is None
        return loaded and not self._stopped

    async def stop(self) -> None:
        """Stop the engine thread; requests still running are answered with a refusal
        instead of waiting for events that will never come."""
        self._stopped = True
        await asyncio.to_thread(self._engine.stop)
        message = "the oracle stopped before this request finished; retry it"
        for generation in self._generations.values():
            generation.queue.put_nowait(Rejected("service_unavailable", message))

    @asynccontextmanager
    async def generate(self, request: GenerationRequest) -> AsyncIterator[Generation]:
        """Submit a request; leaving the block early cancels whatever is still running."""
        if not self.ready:
            state = "is stopping" if self._stopped else "is still loading"
            raise EngineNotReadyError(f"the model {state}")
        if self.in_flight >= self.capacity:
            raise QueueFullError(f"{self.in_flight} requests are already in flight")
        generation = Generation(request)
        self._generations[request.request_id] = generation
        try:
            self._engine.submit(request)
            first = await generation.queue.get()
            if isinstance(first, Rejected):
                generation.finished = True
                raise RequestRejectedError(first)
            assert isinstance(first, Admitted)
            generation.prompt_tokens = first.prompt_tokens
            generation.prompt_ids = first.prompt_ids
            generation.prompt_text = request.raw_prompt or first.prompt_text
            yield generation
        finally:
            del self._generations[request.request_id]
            if not generation.finished:
                self._engine.cancel(request.request_id)

    def cancel(self, request_id: str) -> None:
        """Stop a request now; its sequences are freed before the next decode."""
        self._engine.cancel(request_id)

    def add_listener(self, listener: ProgressListener) -> None:
        """Receive every step's sequence progress and draft outcomes (hub, metrics)."""
        self._listeners.append(listener)

    def _report_threadsafe(self, reports: list[Progress]) -> None:
        self._loop.call_soon_threadsafe(self._broadcast, reports)

    def _broadcast(self, reports: list[Progress]) -> None:
        for listener in self._listeners:
            try:
                listener(reports)
            except Exception:  # a listener's bug must not reach the engine's callers
                log.exception("progress listener failed")

    def _deliver_threadsafe(self, events: list[tuple[str, EngineEvent]]) -> None:
        self._loop.call_soon_threadsafe(self._dispatch, events)

    def _dispatch(self, events: list[tuple[str, EngineEvent]]) -> None:
        for request_id, event in events:
            generation = self._generations.get(request_id)
            if generation is not None:
                generation.queue.put_nowait(event)
