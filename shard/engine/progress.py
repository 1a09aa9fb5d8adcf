"""The engine's progress feed: each step's draft outcomes and, while someone follows them,
each sequence's new tokens, handed out once per step without waiting on the reader."""

import threading
from collections.abc import Callable

from shard.engine.sequence import Task
from shard.engine.types import Progress, SequenceUpdate

ReportProgress = Callable[[list[Progress]], None]
"""Hands one step's progress to the asyncio side (must not block)."""


class ProgressFeed:
    """Filled on the engine thread; `follow` may be called from any thread."""

    def __init__(self, report: ReportProgress | None) -> None:
        self._report = report
        self._following = threading.Event()
        self._pending: list[Progress] = []

    def follow(self, on: bool) -> None:
        """Report sequences' tokens (the swarm turns them into scouts' work) or stop."""
        if on:
            self._following.set()
        else:
            self._following.clear()

    @property
    def following(self) -> bool:
        return self._following.is_set()

    def add(self, item: Progress) -> None:
        self._pending.append(item)

    def new_tokens(self, task: Task) -> None:
        """Every decoding choice's tokens the feed has not reported yet."""
        if not task.request.shown_to_scouts:
            return
        for choice in task.choices:
            if choice.next_token is None or len(choice.tokens) <= choice.reported:
                continue
            new = tuple(choice.tokens[choice.reported :])
            self.add(SequenceUpdate(choice.key, task.request.owner, choice.reported, new))
            choice.reported = len(choice.tokens)

    def ended(self, task: Task) -> None:
        for choice in task.choices:
            if choice.reported:
                self.add(SequenceUpdate(choice.key, task.request.owner, 0, (), ended=True))

    def flush(self) -> None:
        if self._pending:
            items, self._pending = self._pending, []
            if self._report is not None:
                self._report(items)
