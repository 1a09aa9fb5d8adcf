"""The llama.cpp model and context, through llama-cpp-python's low-level API.

Implements `shard.engine.model.Model`. Only the engine thread (and a scout's model thread,
which has its own model) calls into this class (docs/architecture.md, invariant 5).
"""

import ctypes
import functools
import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import llguidance
import llguidance.llamacpp
import numpy as np

from shard.engine.devices import (
    GpuOffload,
    gpu_backend,
    llama_layers,
    offloaded_layers,
    requested_layers,
)
from shard.engine.literal_text import Span, alternation
from shard.engine.model import TokenBatch
from shard.engine.sampling import Logits

log = logging.getLogger(__name__)
_GGML_LOG_LEVEL_ERROR = 4  # enum ggml_log_level in ggml.h
_GGML_TYPE_F16 = 1  # enum ggml_type in ggml.h
_GGML_TYPE_BF16 = 30
_FLASH_ATTENTION_ON = 1  # enum llama_flash_attn_type in llama.h
_UNNORMALIZED_VOCABS = (llama_cpp.LLAMA_VOCAB_TYPE_SPM, llama_cpp.LLAMA_VOCAB_TYPE_BPE)
_STRIPS_WHITESPACE = llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP | llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP
_CONTROL = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
"""What llama.cpp reads in text only when asked to parse special tokens (user-defined tokens
it reads always)."""
MAX_UBATCH = 512
"""Most tokens llama.cpp computes in one graph run; a longer batch is split."""


@dataclass(frozen=True)
class ContextShape:
    """How big a context to make: sequences that decode together and each one's length."""

    n_ctx_per_seq: int
    n_seq: int
    n_batch: int
    threads: int
    repack_weights: bool = False
    """Repacked weights decode faster in batches but round differently for one token than
    for many, so a greedy output would depend on what else is running. Off by default."""


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _quiet_llama_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """Route llama.cpp's chatter to Python logging at debug level (errors stay visible)."""
    if level == _GGML_LOG_LEVEL_ERROR:
        log.error(text.decode(errors="replace").rstrip())
    else:
        log.debug(text.decode(errors="replace").rstrip())


class LlamaModel:
    """A loaded GGUF with one context of `n_seq` independent KV streams."""

    def __init__(self, path: Path, shape: ContextShape, gpu: GpuOffload | None = None) -> None:
        # ggml's tiled K-quant matmul runs only for 8+ rows and rounds differently from the
        # row-by-row kernel, so a sequence's logits would depend on how many others share its
        # batch. Greedy outputs must not (concurrency, draft verification): keep it off. It
        # costs about a fifth of prompt speed and nothing measurable on decode here.
        os.environ.setdefault("GGML_CPU_TILED_MM", "0")
        llama_cpp.llama_log_set(_quiet_llama_log, ctypes.c_void_p())
        llama_cpp.llama_backend_init()
        model_params = llama_cpp.llama_model_default_params()
        model_params.use_extra_bufts = shape.repack_weights
        gpu = gpu or GpuOffload()
        requested = requested_layers(gpu)
        model_params.n_gpu_layers = llama_layers(requested)
        model_params.main_gpu = gpu.main_gpu
        if requested and not gpu_backend():
            log.warning("--n-gpu-layers %d: this llama.cpp build has no GPU backend", requested)
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        if not model:
            raise ValueError(f"llama.cpp could not load the model at {path}")
        self._model = model
        self.gpu_layers = offloaded_layers(requested, llama_cpp.llama_model_n_layer(model))
        """Layers llama.cpp put on a GPU."""
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.path = path
        self.shape = shape

        params = llama_cpp.llama_context_default_params()
        params.n_ctx = shape.n_ctx_per_seq * shape.n_seq
        params.n_seq_max = shape.n_seq
        params.n_batch = shape.n_batch + shape.n_seq  # room for a filler row per sequence
        params.n_ubatch = min(shape.n_batch, MAX_UBATCH)
        params.n_threads = shape.threads
        params.n_threads_batch = shape.threads
        params.kv_unified = False  # one stream per sequence: results don't depend on neighbours
        # Verifying a draft decodes several tokens of one sequence at once, and their logits
        # must equal one-token-at-a-time decoding bit for bit. ggml's flash attention picks a
        # split-KV kernel for one query and a tiled one for many, which round differently;
        # with K and V of different types it always runs its one-row kernel, whatever the
        # number of queries (ggml-cpu ops.cpp). BF16 values are accumulated in f32.
        params.flash_attn_type = _FLASH_ATTENTION_ON
        params.type_k = _GGML_TYPE_F16
        params.type_v = _GGML_TYPE_BF16
        params.no_perf = True
        context = llama_cpp.llama_init_from_model(model, params)
        if not context:
            raise ValueError("llama.cpp could not create a context; try a smaller --n-ctx")
        self._ctx = context
        self._memory = llama_cpp.llama_get_memory(context)
        self._piece_buffer = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes] = {}
        self._grammar_tokenizer: llguidance.LLTokenizer | None = None

    # -- metadata ---------------------------------------------------------------------------

    def metadata(self, key: str) -> str | None:
        """A GGUF metadata value as text, or None when the file does not have it."""
        buffer = ctypes.create_string_buffer(4096)
        size = llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buffer, len(buffer))
        if size < 0:
            return None
        if size >= len(buffer):
            buffer = ctypes.create_string_buffer(size + 1)
            llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buffer, len(buffer))
        return buffer.value.decode(errors="replace")

    def embedded_chat_template(self) -> str | None:
        """The Jinja chat template stored in the GGUF, if any."""
        template = llama_cpp.llama_model_chat_template(self._model, None)
        return template.decode(errors="replace") if template else None

    # -- tokens -----------------------------------------------------------------------------

    def tokenize(self, text: str, literal: Sequence[Span] = ()) -> list[int]:
        """Text to token ids, adding BOS where the model wants it and parsing control-token
        text as the tokens, except within the `literal` spans (shard.engine.literal_text).

        With spans, the text is cut at the control tokens outside them and each piece
        tokenized as text: llama.cpp cuts at the same places and tokenizes the same pieces
        alone, so a prompt comes out as it would whole, but for the spans."""
        control = self.control_text
        if not literal or control is None:
            return self._tokenize(text, add_bos=True, parse_special=True)
        tokens = [self.bos_token] if llama_cpp.llama_vocab_get_add_bos(self.vocab) else []
        start = 0
        for found in control.finditer(text):
            if any(a < found.end() and found.start() < b for a, b in literal):
                continue
            tokens += self._tokenize(text[start : found.start()], False, False)
            tokens.append(self._control_ids[found.group()])
            start = found.end()
        return tokens + self._tokenize(text[start:], False, False)

    def _tokenize(self, text: str, add_bos: bool, parse_special: bool) -> list[int]:
        data = text.encode()
        capacity = len(data) + 8
        tokens = (llama_cpp.llama_token * capacity)()
        count = llama_cpp.llama_tokenize(
            self.vocab, data, len(data), tokens, capacity, add_bos, parse_special
        )
        if count < 0:
            capacity = -count
            tokens = (llama_cpp.llama_token * capacity)()
            count = llama_cpp.llama_tokenize(
                self.vocab, data, len(data), tokens, capacity, add_bos, parse_special
            )
        return list(tokens[:count])

    @functools.cached_property
    def _control_ids(self) -> dict[str, int]:
        ids: dict[str, int] = {}
        for token in range(self.n_vocab):
            if llama_cpp.llama_vocab_get_attr(self.vocab, token) & _CONTROL:
                text = llama_cpp.llama_vocab_get_text(self.vocab, token) or b""
                if text:
                    ids.setdefault(text.decode(errors="replace"), token)
        return ids

    @functools.cached_property
    def control_text(self) -> re.Pattern[str] | None:
        """What spells a control token in text; None where one strips the whitespace beside
        it, as then a piece cut at it is not tokenized as llama.cpp would."""
        strips = any(
            llama_cpp.llama_vocab_get_attr(self.vocab, token) & _STRIPS_WHITESPACE
            for token in self._control_ids.values()
        )
        return (
            None if strips or not self._control_ids else re.compile(alternation(self._control_ids))
        )

    @functools.cached_property
    def max_token_bytes(self) -> int | None:
        """The most bytes of text one token stands for (its piece, special text included).
        None where the tokenizer normalizes text (WordPiece, Unigram, ...) or a special token
        swallows the whitespace beside it, as then no such bound holds. Made on first use:
        about 0.4 s for 262k tokens."""
        if llama_cpp.llama_vocab_type(self.vocab) not in _UNNORMALIZED_VOCABS:
            return None
        buffer = ctypes.create_string_buffer(4096)
        longest = 4  # an unknown character stands for up to 4 bytes of UTF-8
        for token in range(self.n_vocab):
            if llama_cpp.llama_vocab_get_attr(self.vocab, token) & _STRIPS_WHITESPACE:
                return None
            size = llama_cpp.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, True)
            longest = max(longest, abs(size))
        return longest

    def piece(self, token: int) -> bytes:
        """The bytes a token renders as (control tokens render as nothing); cached."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        size = llama_cpp.llama_token_to_piece(
            self.vocab, token, self._piece_buffer, len(self._piece_buffer), 0, False
        )
        if size < 0:
            bigger = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(self.vocab, token, bigger, -size, 0, False)
            rendered = bigger.raw[:size]
        else:
            rendered = self._piece_buffer.raw[:size]
        self._pieces[token] = rendered
        return rendered

    @property
    def bos_token(self) -> int:
        """BOS, or token 0 for vocabularies without one (any id will do for timing)."""
        return max(0, int(llama_cpp.llama_vocab_bos(self.vocab)))

    def tokenizer_fingerprint(self) -> str:
        """A hash of every token's text and kind: a scout's draft ids mean the same to us
        only when its model's tokenizer hashes the same."""
        digest = hashlib.sha256(str(self.n_vocab).encode())
        for token in range(self.n_vocab):
            text = llama_cpp.llama_vocab_get_text(self.vocab, token) or b""
            attr = llama_cpp.llama_vocab_get_attr(self.vocab, token)
            digest.update(len(text).to_bytes(4, "little") + text + int(attr).to_bytes(4, "little"))
        for special in (llama_cpp.llama_vocab_bos, llama_cpp.llama_vocab_eos):
            digest.update(int(special(self.vocab)).to_bytes(8, "little", signed=True))
        return digest.hexdigest()

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def grammar_tokenizer(self) -> llguidance.LLTokenizer:
        """The vocabulary as llguidance sees it, with EOS and end-of-turn ending a grammar;
        made on first use (about 1.5 s for 262k tokens), then kept."""
        if self._grammar_tokenizer is None:
            ends = [llama_cpp.llama_vocab_eos(self.vocab), llama_cpp.llama_vocab_eot(self.vocab)]
            log.info("reading the vocabulary for structured output (once)")
            self._grammar_tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(
                self.vocab, eos_token=[end for end in ends if end >= 0]
            )
        return self._grammar_tokenizer

    def bos_text(self) -> str:
        """The BOS token's text, so a template that writes it is not tokenized with a second."""
        bos = llama_cpp.llama_vocab_bos(self.vocab)
        if bos < 0:
            return ""
        size = llama_cpp.llama_token_to_piece(
            self.vocab, bos, self._piece_buffer, len(self._piece_buffer), 0, True
        )
        return self._piece_buffer.raw[: max(size, 0)].decode(errors="replace")

    def eos_text(self) -> str:
        eos = llama_cpp.llama_vocab_eos(self.vocab)
        if eos < 0:
            return ""
        size = llama_cpp.llama_token_to_piece(
            self.vocab, eos, self._piece_buffer, len(self._piece_buffer), 0, True
        )
        return self._piece_buffer.raw[: max(size, 0)].decode(errors="replace")

    # -- decoding ---------------------------------------------------------------------------

    def new_batch(self, capacity: int) -> "Batch":
        return Batch(capacity, self.shape.n_seq)

    def decode(self, batch: "TokenBatch") -> None:
        """Run the model over every token in the batch; raises when llama.cpp refuses."""
        assert isinstance(batch, Batch)
        status = llama_cpp.llama_decode(self._ctx, batch.raw)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")

    def logits(self, batch_index: int) -> Logits:
        """A view (no copy) of the logits for the batch entry at `batch_index`."""
        pointer = llama_cpp.llama_get_logits_ith(self._ctx, batch_index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def forget(self, seq_id: int, from_position: int = 0) -> None:
        """Drop a sequence's cache from `from_position` on (the whole of it by default)."""
        llama_cpp.llama_memory_seq_rm(self._memory, seq_id, from_position, -1)

    def copy_sequence(self, source: int, target: int) -> None:
        """Give `target` everything `source` has cached (how `n` choices share one prompt).

        Each sequence has its own KV stream, and llama.cpp copies only whole streams.
        """
        llama_cpp.llama_memory_seq_cp(self._memory, source, target, -1, -1)

    def set_threads(self, threads: int) -> None:
        llama_cpp.llama_set_n_threads(self._ctx, threads, threads)

    def close(self) -> None:
        llama_cpp.llama_free(self._ctx)
        llama_cpp.llama_model_free(self._model)


class Batch:
    """A reusable llama_batch that is filled token by token and decoded in one call."""

    def __init__(self, capacity: int, n_seq: int) -> None:
        self.capacity = capacity
        self.raw = llama_cpp.llama_batch_init(capacity, 0, n_seq)
        self.raw.n_tokens = 0

    def __len__(self) -> int:
        return int(self.raw.n_tokens)

    def clear(self) -> None:
        self.raw.n_tokens = 0

    def add(self, token: int, position: int, seq_id: int, want_logits: bool) -> int:
        """Append one token; returns its index, which `LlamaModel.logits` takes."""
        index = int(self.raw.n_tokens)
        if index >= self.capacity:
            raise OverflowError("batch is full")
        raw = self.raw
        raw.token[index] = token
        raw.pos[index] = position
        raw.n_seq_id[index] = 1
        raw.seq_id[index][0] = seq_id
        raw.logits[index] = want_logits
        raw.n_tokens = index + 1
        return index

    def free(self) -> None:
        llama_cpp.llama_batch_free(self.raw)
