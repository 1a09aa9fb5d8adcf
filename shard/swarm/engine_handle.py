"""The engine as the swarm sees it: whichever client is current, once its model has loaded.

A restart swaps the client, so the swarm asks for it each time instead of keeping one. It
uses only what `SwarmEngine` names: the draft sink, the progress switch, the status, and
ordinary generation (for golden tickets).
"""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from shard.engine.client import Generation
from shard.engine.spec.scout_drafts import DraftSink
from shard.engine.types import EngineStatus, GenerationRequest
from shard.swarm.protocol import MAX_DRAFT_TOKENS

WORK_STEPS = 2
"""Work asks for two steps' worth of draft tokens: a step verifies at most --draft-max, so
what is left of an answer still covers the step after one that accepted all it verified."""


class SwarmEngine(Protocol):
    """What the swarm needs of `EngineClient` (a fake in unit tests)."""

    @property
    def ready(self) -> bool: ...

    @property
    def status(self) -> EngineStatus | None: ...

    @property
    def drafts(self) -> DraftSink: ...

    @property
    def in_flight(self) -> int: ...

    def follow_progress(self, on: bool) -> None: ...

    def cede_threads(self, threads: int) -> None: ...

    def generate(self, request: GenerationRequest) -> AbstractAsyncContextManager[Generation]: ...


class EngineHandle:
    def __init__(self, current: Callable[[], SwarmEngine | None]) -> None:
        self._current = current

    def ready(self) -> SwarmEngine | None:
        """The current client if its model has loaded."""
        engine = self._current()
        return engine if engine is not None and engine.ready else None

    def status(self) -> EngineStatus | None:
        engine = self.ready()
        return engine.status if engine is not None else None

    def draft_k(self) -> int | None:
        """How many tokens a work frame asks for; None while the model loads, and when
        speculation is off (`--draft-max 0`): then scouts get no work, so no credit."""
        status = self.status()
        if status is None or status.draft_max <= 0:
            return None
        return min(WORK_STEPS * status.draft_max, MAX_DRAFT_TOKENS)
