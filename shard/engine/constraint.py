"""Structured output: a grammar each choice's tokens must follow, enforced at sampling time
with llguidance (a maintained constraint library that reads llama.cpp's vocabulary).

The target's token at every position is sampled from logits in which the grammar's forbidden
tokens are -inf, and the choice's matcher then consumes it. Verifying a draft samples those
same targets in order, so a draft token the grammar forbids can never equal its target and is
simply rejected: output is identical with and without drafts, and the matcher never has to
roll back (it only ever sees decided tokens).
"""

from typing import TYPE_CHECKING, Any

import llguidance
import llguidance.numpy
import numpy as np

from shard.engine.sampling import Logits

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions


class GrammarError(ValueError):
    """The schema or grammar cannot be compiled; the message says why."""


class GrammarDeadEnd(GrammarError):
    """The grammar allows no way on from here: it admits no complete value along this path
    (a required property whose schema is its own object, say), which llguidance finds only
    while matching."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            "the grammar allows no way on from the output so far, so no answer can match it "
            f"(does a required part of the schema refer back to itself?): {problem}"
        )


def json_grammar(schema: dict[str, Any] | None, strict: bool = True) -> str:
    """The grammar for JSON matching `schema` (any JSON object when None). Without `strict`,
    keywords the library does not implement are ignored rather than refused."""
    # compact JSON, as OpenAI returns it: flexible whitespace lets a small model pad forever
    options: JsonCompileOptions = {"whitespace_flexible": False, "lenient": not strict}
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            schema if schema is not None else {"type": "object"}, defaults=options
        )
    except ValueError as error:
        raise GrammarError(str(error)) from error
    return checked(grammar)


def checked_lark(lark: str) -> str:
    """A Lark grammar (llguidance's dialect, which embeds JSON schemas as `%json {...}`)."""
    return checked(llguidance.LLMatcher.grammar_from_lark(lark))


def regex_grammar(pattern: str) -> str:
    return checked(llguidance.LLMatcher.grammar_from_regex(pattern))


def checked(grammar: str) -> str:
    problem = llguidance.LLMatcher.validate_grammar(grammar)
    if problem:
        raise GrammarError(problem)
    return grammar


class TokenConstraint:
    """One choice's place in its grammar: which tokens may come next."""

    def __init__(self, tokenizer: llguidance.LLTokenizer, grammar: str) -> None:
        self._matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if self._matcher.is_error():
            raise GrammarError(self._matcher.get_error())
        self._n_vocab = tokenizer.vocab_size
        self._ends = list(tokenizer.eos_tokens)
        self._mask = llguidance.numpy.allocate_token_bitmask(1, self._n_vocab)
        self._filled = False
        """Whether `_mask` is for the matcher's place now (so the first token reuses the
        mask made here)."""
        self._fill()  # a grammar stuck at its start is refused before anything is generated

    def copy(self) -> "TokenConstraint":
        """Another choice of the same request, at the same place (the grammar's start)."""
        twin = object.__new__(TokenConstraint)
        twin._matcher = self._matcher.deep_copy()
        twin._n_vocab, twin._ends = self._n_vocab, self._ends
        twin._mask, twin._filled = self._mask.copy(), self._filled
        return twin

    def _fill(self) -> None:
        if not self._filled:
            llguidance.numpy.fill_next_token_bitmask(self._matcher, self._mask)
            self._filled = True
        if self._matcher.is_error():
            raise GrammarDeadEnd(self._matcher.get_error())

    def allowed(self, logits: Logits) -> Logits:
        """A copy of `logits` with every token the grammar forbids here at -inf; raises
        GrammarDeadEnd when it allows no way on. Should no token be allowed all the same,
        only ending is."""
        self._fill()
        bits = np.unpackbits(self._mask.view(np.uint8), count=len(logits), bitorder="little")
        allowed = bits.view(np.bool_)
        if not allowed.any():
            allowed = np.zeros(len(logits), dtype=np.bool_)
            allowed[self._ends] = True
        masked: Logits = np.where(allowed, logits, np.float32(-np.inf))
        return masked

    def consume(self, token: int) -> None:
        """The choice's token at this position was decided (a masked sample, so allowed)."""
        self._matcher.consume_token(token)
        self._filled = False
