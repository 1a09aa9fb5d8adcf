"""Turns a choice's token pieces into text, holding back what might still become a stop string.

Pieces are bytes; a UTF-8 character may span tokens, so an incremental decoder keeps the tail.
Text that could be the start of a stop string is held until the next token settles it, so a
client never sees text that a stop string later takes back. It also counts the tokens whose
text has begun to be released, so their logprobs go out with their text, and a token wholly
inside a stop string, or after it, never does (as OpenAI trims).
"""

import bisect
import codecs


class TextStream:
    """Per-choice text assembly with OpenAI `stop` semantics (the stop string is not returned)."""

    def __init__(self, stop: tuple[str, ...]) -> None:
        self._stop = tuple(s for s in stop if s)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self.stopped = False
        self._starts: list[int] = []
        """Where each pushed token's text starts, in characters of the whole output."""
        self._decoded = 0
        self._released = 0
        self._flushed = False

    def push(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that is now safe to release."""
        if self.stopped:
            return ""
        self._starts.append(self._decoded)
        text = self._decoder.decode(piece)
        self._decoded += len(text)
        self._pending += text
        found = [at for stop in self._stop if (at := self._pending.find(stop)) >= 0]
        if found:
            self.stopped = True
            released, self._pending = self._pending[: min(found)], ""
            return self._release(released)
        hold = self._held_back_length()
        cut = len(self._pending) - hold
        released, self._pending = self._pending[:cut], self._pending[cut:]
        return self._release(released)

    def flush(self) -> str:
        """Release everything held (generation ended for another reason than a stop string)."""
        if self.stopped:
            return ""
        released = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        self._flushed = True
        return self._release(released)

    @property
    def tokens_released(self) -> int:
        """How many pushed tokens have text already released (all, once flushed); a token
        that begins inside a stop string is never counted."""
        if self._flushed:
            return len(self._starts)
        return bisect.bisect_left(self._starts, self._released)

    def _release(self, text: str) -> str:
        self._released += len(text)
        return text

    def _held_back_length(self) -> int:
        """Longest tail of the pending text that is a proper prefix of some stop string."""
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(self._pending)), longest, -1):
                if self._pending.endswith(stop[:size]):
                    longest = size
                    break
        return longest
