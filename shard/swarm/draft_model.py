"""The scout's draft model: greedy drafts, with each sequence's context kept in a KV slot.

A slot holds one sequence's tokens, and the continuation the scout has drafted past them
(`ahead`), kept in the KV cache as if the oracle would accept it. The scout extends it while
it has nothing else to do (proactive drafting, as in SpecEdge), so work is answered from
tokens already drafted; when the oracle's decided tokens differ, the slot rewinds to the
first difference. A sequence the scout has not seen, or has evicted, asks the oracle to
resync it from the start. Only the scout's model thread calls this class.
"""

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shard.engine.llama_model import Batch, ContextShape, LlamaModel

_N_BATCH = 512


@dataclass
class _Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)
    """What the oracle has decided."""
    ahead: list[int] = field(default_factory=list)
    """The scout's own greedy continuation of `tokens`, not yet decided."""
    cached: int = 0
    """How many of `tokens + ahead` are in the KV cache."""


class NeedsResync(Exception):
    """The scout does not have the sequence's earlier tokens."""


class DraftModel:
    def __init__(self, path: Path, n_ctx: int, slots: int, threads: int) -> None:
        self.model = LlamaModel(path, ContextShape(n_ctx, slots, _N_BATCH, threads))
        self.n_ctx = n_ctx
        self.fingerprint = self.model.tokenizer_fingerprint()
        self.n_vocab = self.model.n_vocab
        self._batch = Batch(_N_BATCH, slots)
        self._free = list(range(slots))
        self._slots: OrderedDict[str, _Slot] = OrderedDict()

    def sync(self, key: str, position: int, tokens: list[int]) -> _Slot:
        """Append the oracle's new tokens to the sequence (`position` is where they start)."""
        slot = self._slots.get(key)
        if slot is None:
            if position != 0:
                raise NeedsResync(key)
            slot = self._new_slot(key)
        elif position != len(slot.tokens):
            self.forget(key)
            raise NeedsResync(key)
        self._slots.move_to_end(key)
        matched = 0
        while (
            matched < min(len(tokens), len(slot.ahead)) and tokens[matched] == slot.ahead[matched]
        ):
            matched += 1
        if matched == len(tokens):
            del slot.ahead[:matched]  # the oracle decided what was drafted: still ahead
        else:
            kept = len(slot.tokens) + matched  # rewind to the first difference
            if slot.cached > kept:
                self.model.forget(slot.seq_id, kept)
                slot.cached = kept
            slot.ahead.clear()
        slot.tokens.extend(tokens)
        return slot

    def draft(
        self, key: str, position: int, tokens: list[int], k: int, at_least: int | None = None
    ) -> tuple[int, list[int]]:
        """Sync, then answer with up to k tokens past what is decided: those drafted ahead
        already, drafting now up to `at_least` of them (all k when None; a streaming scout
        asks for none: it answers at once and streams the rest as it drafts them); returns
        (where they start, the tokens)."""
        slot = self.sync(key, position, tokens)
        start = len(slot.tokens)
        k = min(k, self.n_ctx - start - 1)
        wanted = k if at_least is None else min(k, at_least)
        while len(slot.ahead) < wanted:
            self._extend(slot)
        return start, slot.ahead[: max(k, 0)]

    def ahead(self, key: str) -> tuple[int, list[int]]:
        """Where the sequence's undecided tokens start, and what is drafted past it."""
        slot = self._slots.get(key)
        return (len(slot.tokens), list(slot.ahead)) if slot is not None else (0, [])

    def run_ahead(self, limit: int) -> str | None:
        """Draft one more token for a sequence under `limit` tokens ahead, and return its
        key; None when every one is far enough ahead.

        Sequences it is already ahead on come first, least far ahead first: a draft is only
        worth something while it is ahead of the oracle, so a scout too slow for all its
        sequences keeps ahead on some rather than behind on all. With none ahead, the one
        the oracle last sent work for (the most recently synced) is started."""
        slots = [(k, s) for k, s in self._slots.items() if s.tokens and len(s.ahead) < limit]
        slots = [(k, s) for k, s in slots if len(s.tokens) + len(s.ahead) < self.n_ctx - 1]
        if not slots:
            return None
        ahead = [(k, s) for k, s in slots if s.ahead]
        key, slot = min(ahead, key=lambda item: len(item[1].ahead)) if ahead else slots[-1]
        self._extend(slot)
        return key

    def _extend(self, slot: _Slot) -> None:
        slot.ahead.append(int(np.argmax(self._catch_up(slot))))

    def forget(self, key: str) -> None:
        slot = self._slots.pop(key, None)
        if slot is not None:
            self.model.forget(slot.seq_id)
            self._free.append(slot.seq_id)

    def _new_slot(self, key: str) -> _Slot:
        if not self._free:
            oldest = next(iter(self._slots))
            self.forget(oldest)
        slot = _Slot(self._free.pop())
        self._slots[key] = slot
        return slot

    def _catch_up(self, slot: _Slot) -> np.ndarray:
        """Decode the tokens of `tokens + ahead` not yet cached; returns the logits after the
        last one. The last token is decoded again when it is cached already (logits are not
        kept between calls)."""
        known = slot.tokens + slot.ahead
        if slot.cached >= len(known):
            slot.cached = len(known) - 1
            self.model.forget(slot.seq_id, slot.cached)
        while slot.cached < len(known):
            self._batch.clear()
            end = min(len(known), slot.cached + _N_BATCH)
            for position in range(slot.cached, end):
                self._batch.add(known[position], position, slot.seq_id, position == end - 1)
            self.model.decode(self._batch)
            slot.cached = end
        return np.array(self.model.logits(len(self._batch) - 1))

    def close(self) -> None:
        self._batch.free()
        self.model.close()
