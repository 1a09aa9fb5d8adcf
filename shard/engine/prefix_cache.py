"""The context's sequences, and what each free one still holds: the prefix cache.

A finished request's sequence keeps its KV cache while it is free. A new request whose prompt
starts with tokens one of them holds (the history of a multi-turn chat, a shared system
prompt, an agent loop) copies that cache into its own sequence and prefills only the rest.
Memory is bounded twice. The caches live in the context's own KV streams (`--parallel` of
`--n-ctx`), so they take no memory beyond it; a free sequence's cache is dropped when the
sequence is taken for another request, lowest ids first. And the free sequences together keep
at most `capacity` tokens (`--prefix-cache-tokens`): past it, the least recently freed caches
are dropped first.
"""

from collections.abc import Sequence

from shard.engine.model import Model
from shard.engine.sequence import Choice


class SequencePool:
    """Free sequence ids and the tokens each still has cached (positions 0..len-1)."""

    def __init__(self, n_seq: int, capacity: int | None = None) -> None:
        self._free: dict[int, list[int]] = {seq_id: [] for seq_id in range(n_seq)}
        """In the order they were freed: the first is the least recently used."""
        self.capacity = capacity
        """Most tokens all free sequences keep cached together; None: whatever they hold."""

    @property
    def cached_tokens(self) -> int:
        """Tokens the free sequences hold now."""
        return sum(len(cached) for cached in self._free.values())

    def __len__(self) -> int:
        """How many sequences are free."""
        return len(self._free)

    def longest_prefix(self, prompt: Sequence[int]) -> tuple[int | None, int]:
        """The free sequence whose cache shares the longest prefix with `prompt`, and how
        long it is; at most all but the prompt's last token, which must be decoded for its
        logits. (None, 0) when none shares anything."""
        best: tuple[int | None, int] = (None, 0)
        limit = len(prompt) - 1
        for seq_id, cached in self._free.items():
            length = 0
            for ours, theirs in zip(cached, prompt[:limit], strict=False):
                if ours != theirs:
                    break
                length += 1
            if length > best[1]:
                best = (seq_id, length)
        return best

    def take(self) -> tuple[int, bool]:
        """The lowest free id (llama.cpp decodes a run of consecutive ids as one graph), and
        whether it still held a cache the caller must drop or overwrite."""
        seq_id = min(self._free)
        return seq_id, bool(self._free.pop(seq_id))

    def give_back(self, model: Model, seq_id: int, cached: list[int]) -> None:
        """A sequence is free again, with `cached` still in its KV cache (may be empty); the
        least recently freed caches are dropped while all of them hold more than `capacity`."""
        self._free[seq_id] = cached
        if self.capacity is None:
            return
        excess = self.cached_tokens - self.capacity
        for old_id, held in list(self._free.items()):
            if excess <= 0:
                break
            if held:
                model.forget(old_id)
                self._free[old_id] = []
                excess -= len(held)

    def assign(
        self, model: Model, prompt: Sequence[int], n: int, reuse: bool
    ) -> tuple[list[int], int]:
        """Take `n` sequences for a request (the lowest free ids); with `reuse`, the first
        gets the longest cached prefix of `prompt`, copied over and trimmed. Returns the ids
        and how many prompt tokens are cached in the first."""
        source, cached = self.longest_prefix(prompt) if reuse else (None, 0)
        taken = [self.take() for _ in range(n)]
        lead = taken[0][0]
        if source is not None and source != lead:
            model.copy_sequence(source, lead)  # the whole stream; trimmed below
        if source is not None:
            model.forget(lead, cached)
        for seq_id, held in taken:
            if held and (seq_id != lead or source is None):
                model.forget(seq_id)
        return [seq_id for seq_id, _ in taken], cached

    def release(self, model: Model, choice: Choice, keep: bool) -> None:
        """A choice's sequence is free again; with `keep`, what it decoded stays cached."""
        kept: list[int] = []
        if keep and choice.position > 0:
            model.forget(choice.seq_id, choice.position)  # drafts past it, if any
            kept = choice.tokens[: choice.position]
        else:
            model.forget(choice.seq_id)
        self.give_back(model, choice.seq_id, kept)
