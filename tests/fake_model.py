"""A fake model with literal logits, for running the engine in-process without llama.cpp.

It implements `shard.engine.model.Model` strictly: every sequence has its own cache, a token
must be decoded at the next free position of its sequence (so a missed rewind fails), and
the logits at a position are a pure function of the sequence's tokens up to it (`Rule`).
"""

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import llguidance
import numpy as np

from shard.engine.model import TokenBatch
from shard.engine.sampling import Logits

BOS, EOS, END_OF_TURN = 0, 1, 2
FIRST_TEXT_TOKEN = 3

Rule = Callable[[Sequence[int]], Logits]
"""Logits for the position after `tokens` (the sequence so far)."""


def cycling_rule(n_vocab: int, period: int = 7) -> Rule:
    """A toy language: after token t comes t + 1 (cycling through `period` text tokens), with
    a spread of less likely alternatives, so greedy text repeats (n-gram drafts fit it) and
    sampled text varies."""
    base = np.linspace(0.0, 2.0, n_vocab, dtype=np.float32)

    def rule(tokens: Sequence[int]) -> Logits:
        logits = base.copy()
        last = tokens[-1] if tokens else BOS
        preferred = FIRST_TEXT_TOKEN + (max(last - FIRST_TEXT_TOKEN, 0) + 1) % period
        logits[preferred] += 4.0
        logits[FIRST_TEXT_TOKEN + (preferred + 2) % period] += 3.0
        logits[EOS] = -5.0
        logits[END_OF_TURN] = -3.0  # rare: a sampled answer seldom ends before it starts
        return logits

    return rule


@dataclass
class FakeBatch:
    capacity: int
    entries: list[tuple[int, int, int, bool]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        self.entries.clear()

    def add(self, token: int, position: int, seq_id: int, want_logits: bool) -> int:
        if len(self.entries) >= self.capacity:
            raise OverflowError("batch is full")
        self.entries.append((token, position, seq_id, want_logits))
        return len(self.entries) - 1

    def free(self) -> None:
        self.entries.clear()


class FakeModel:
    """Implements `shard.engine.model.Model` with `rule` for logits and a sleep for cost."""

    def __init__(
        self,
        rule: Rule | None = None,
        n_vocab: int = 32,
        step_seconds: Callable[[int], float] = lambda tokens: 0.001 + 0.0001 * tokens,
    ) -> None:
        self._n_vocab = n_vocab
        self.rule = rule or cycling_rule(n_vocab)
        self.step_seconds = step_seconds
        self.caches: dict[int, list[int]] = {}
        self._logits: list[Logits | None] = []
        self.decoded_batches: list[int] = []
        """The size of every decode, in order."""
        self.verifying_decodes = 0
        """Decodes in which some sequence had logits read at several positions (a draft being
        verified, or calibration)."""
        self.fail_next_decode: Exception | None = None
        self.threads: list[int] = []
        """Every `set_threads`, in order."""
        self.closed = False

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def bos_token(self) -> int:
        return BOS

    @property
    def gpu_layers(self) -> int:
        return 0

    def new_batch(self, capacity: int) -> TokenBatch:
        return FakeBatch(capacity)

    def metadata(self, key: str) -> str | None:
        return "gemma3" if key == "general.architecture" else None

    def embedded_chat_template(self) -> str | None:
        return None

    @property
    def control_text(self) -> re.Pattern[str] | None:
        return None  # no control tokens to spell

    def tokenize(self, text: str, literal: Sequence[tuple[int, int]] = ()) -> list[int]:
        span = self._n_vocab - FIRST_TEXT_TOKEN
        return [BOS] + [FIRST_TEXT_TOKEN + ord(char) % span for char in text]

    @property
    def max_token_bytes(self) -> int | None:
        return 4  # one token per character, of up to 4 bytes of UTF-8

    def piece(self, token: int) -> bytes:
        if token < FIRST_TEXT_TOKEN:
            return b""
        return bytes([ord("a") + (token - FIRST_TEXT_TOKEN) % 26])

    def tokenizer_fingerprint(self) -> str:
        return f"fake-{self._n_vocab}"

    def is_end_of_generation(self, token: int) -> bool:
        return token in (EOS, END_OF_TURN)

    def grammar_tokenizer(self) -> llguidance.LLTokenizer:
        """The fake vocabulary for llguidance: control tokens marked with 0xff, as its
        llama.cpp reader marks them, and letters that tokenize one byte per token."""
        pieces = [b"\xff<bos>", b"\xff<eos>", b"\xff<end_of_turn>"]
        pieces += [self.piece(token) for token in range(FIRST_TEXT_TOKEN, self._n_vocab)]
        first = {piece: token for token, piece in reversed(list(enumerate(pieces)))}

        class Vocabulary:
            eos_token_id, bos_token_id = EOS, BOS
            tokens = pieces
            special_token_ids = (BOS, EOS, END_OF_TURN)

            def __call__(self, text: bytes) -> list[int]:
                return [first[bytes([byte])] for byte in text if bytes([byte]) in first]

        wrapper = llguidance.TokenizerWrapper(Vocabulary())
        return llguidance.LLTokenizer(wrapper, eos_token=[EOS, END_OF_TURN])

    def bos_text(self) -> str:
        return "<bos>"

    def eos_text(self) -> str:
        return "<eos>"

    def decode(self, batch: TokenBatch) -> None:
        assert isinstance(batch, FakeBatch)
        if self.fail_next_decode is not None:
            error, self.fail_next_decode = self.fail_next_decode, None
            raise error
        self._logits = []
        with_logits = [seq_id for _, _, seq_id, want in batch.entries if want]
        if len(with_logits) > len(set(with_logits)):
            self.verifying_decodes += 1
        for token, position, seq_id, want_logits in batch.entries:
            cache = self.caches.setdefault(seq_id, [])
            assert position == len(cache), f"seq {seq_id}: position {position}, {len(cache)} cached"
            cache.append(token)
            self._logits.append(self.rule(cache) if want_logits else None)
        self.decoded_batches.append(len(batch))
        time.sleep(self.step_seconds(len(batch)))

    def logits(self, batch_index: int) -> Logits:
        logits = self._logits[batch_index]
        assert logits is not None, "logits were not asked for at this index"
        return logits

    def forget(self, seq_id: int, from_position: int = 0) -> None:
        del self.caches.setdefault(seq_id, [])[from_position:]

    def copy_sequence(self, source: int, target: int) -> None:
        self.caches[target] = list(self.caches.get(source, []))

    def set_threads(self, threads: int) -> None:
        self.threads.append(threads)

    def close(self) -> None:
        self.closed = True
