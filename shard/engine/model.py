"""What the engine needs of a model, as a protocol: llama.cpp in production
(`llama_model.LlamaModel`), a fake with literal logits in tests.

Only the engine thread calls a model (docs/architecture.md, invariant 5).
"""

import re
from collections.abc import Sequence
from typing import Protocol

import llguidance

from shard.engine.sampling import Logits


class TokenBatch(Protocol):
    """Tokens for one decode, added one at a time."""

    def __len__(self) -> int: ...

    def clear(self) -> None: ...

    def add(self, token: int, position: int, seq_id: int, want_logits: bool) -> int:
        """Append a token; returns its index, which `Model.logits` takes."""
        ...

    def free(self) -> None: ...


class Model(Protocol):
    """A loaded model with one context of independent sequences (KV streams)."""

    @property
    def n_vocab(self) -> int: ...

    @property
    def bos_token(self) -> int: ...

    @property
    def gpu_layers(self) -> int:
        """Layers llama.cpp put on a GPU (0: all on the CPU)."""
        ...

    def new_batch(self, capacity: int) -> TokenBatch: ...

    def metadata(self, key: str) -> str | None: ...

    def embedded_chat_template(self) -> str | None: ...

    def tokenize(self, text: str, literal: Sequence[tuple[int, int]] = ()) -> list[int]:
        """Token ids, BOS first where the model wants it, control-token text read as the
        token except in the `literal` character spans (shard.engine.literal_text)."""
        ...

    @property
    def control_text(self) -> re.Pattern[str] | None:
        """What spells a control token in text; None where the model cannot keep such
        text literal."""
        ...

    @property
    def max_token_bytes(self) -> int | None:
        """The most bytes of text one token can stand for, so that a text too long for the
        context is refused without tokenizing it (which takes seconds for megabytes, on the
        engine thread); None where no such bound holds."""
        ...

    def piece(self, token: int) -> bytes: ...

    def tokenizer_fingerprint(self) -> str: ...

    def is_end_of_generation(self, token: int) -> bool: ...

    def grammar_tokenizer(self) -> llguidance.LLTokenizer:
        """The vocabulary for structured output's grammars (shard.engine.constraint)."""
        ...

    def bos_text(self) -> str: ...

    def eos_text(self) -> str: ...

    def decode(self, batch: TokenBatch) -> None:
        """Run the model over the batch; raises when it cannot."""
        ...

    def logits(self, batch_index: int) -> Logits: ...

    def forget(self, seq_id: int, from_position: int = 0) -> None:
        """Drop a sequence's cache from `from_position` on."""
        ...

    def copy_sequence(self, source: int, target: int) -> None: ...

    def set_threads(self, threads: int) -> None:
        """Decode with this many CPU threads from now on."""
        ...

    def close(self) -> None: ...
