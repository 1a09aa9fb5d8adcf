"""The scout's draft model: greedy drafts, with each sequence's context kept in a KV slot.

A slot holds one sequence's tokens; a sequence the scout has not seen, or has evicted, asks
the oracle to resync it from the start. Only the scout's model thread calls this class.
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
    cached: int = 0
    """How many of `tokens` are in the KV cache."""


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
        slot.tokens.extend(tokens)
        return slot

    def draft(self, key: str, position: int, tokens: list[int], k: int) -> tuple[int, list[int]]:
        """Sync, then greedily draft up to k tokens; returns (where they start, the tokens)."""
        slot = self.sync(key, position, tokens)
        start = len(slot.tokens)
        k = min(k, self.n_ctx - start - 1)
        if k <= 0:
            return start, []
        logits = self._catch_up(slot)
        drafted = [int(np.argmax(logits))]
        while len(drafted) < k:
            self._batch.clear()
            self._batch.add(drafted[-1], start + len(drafted) - 1, slot.seq_id, True)
            self.model.decode(self._batch)
            drafted.append(int(np.argmax(self.model.logits(0))))
        self.model.forget(slot.seq_id, start)  # keep only what the oracle has decided
        return start, drafted

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
        """Decode the tokens not yet cached; returns the logits after the last one.

        The last token is always decoded again (its logits are not kept between drafts).
        """
        if slot.cached >= len(slot.tokens):
            slot.cached = len(slot.tokens) - 1
            self.model.forget(slot.seq_id, slot.cached)
        while slot.cached < len(slot.tokens):
            self._batch.clear()
            end = min(len(slot.tokens), slot.cached + _N_BATCH)
            for position in range(slot.cached, end):
                self._batch.add(slot.tokens[position], position, slot.seq_id, position == end - 1)
            self.model.decode(self._batch)
            slot.cached = end
        return np.array(self.model.logits(len(self._batch) - 1))

    def close(self) -> None:
        self._batch.free()
        self.model.close()
