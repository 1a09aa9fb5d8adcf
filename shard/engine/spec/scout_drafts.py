"""Scout drafts, posted by the swarm from the event loop and read by the engine thread."""

import threading
from collections.abc import Sequence

from shard.engine.types import ScoutDraft


class DraftSink:
    """The latest scout draft for each sequence: the engine owns it, the swarm posts to it
    (from the event loop), and the engine thread reads it.

    The engine never waits here (docs/architecture.md, invariant 4): a draft that has not
    arrived by the time a step is planned is simply not used.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, ScoutDraft] = {}

    def offer(self, sequence_key: str, draft: ScoutDraft) -> None:
        with self._lock:
            self._latest[sequence_key] = draft

    def latest(self, sequence_key: str) -> ScoutDraft | None:
        with self._lock:
            return self._latest.get(sequence_key)

    def discard(self, sequence_key: str) -> None:
        with self._lock:
            self._latest.pop(sequence_key, None)


def usable_part(history: Sequence[int], draft: ScoutDraft) -> tuple[list[int], int, int]:
    """Align a draft with what the sequence has decided since it was made.

    Returns (the draft's tokens past `history`, tokens of it already decided, how many of
    those matched). A draft that disagrees with a decided token is of no further use.
    """
    known = len(history)
    if draft.start > known or draft.start < 0:
        return [], 0, 0
    decided = min(known - draft.start, len(draft.tokens))
    matched = 0
    while matched < decided and draft.tokens[matched] == history[draft.start + matched]:
        matched += 1
    if matched < decided:
        return [], min(matched + 1, decided), matched
    return list(draft.tokens[decided:]), decided, matched
