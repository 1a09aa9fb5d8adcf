"""Structured output on the fake model's letters: the grammar's mask on literal logits, output
that always matches, and drafts (n-gram, and a scout drafting what the grammar forbids) that
change nothing."""

import asyncio
import re
from dataclasses import replace

import numpy as np
import pytest

from shard.engine.client import EngineClient
from shard.engine.constraint import GrammarError, TokenConstraint, json_grammar, regex_grammar
from shard.engine.types import SCOUT, DraftOutcome, OutputGrammar, Progress
from tests.engine.test_worker import Output, complete, config, request, run, scout_that_drafts
from tests.fake_model import END_OF_TURN, EOS, FakeModel

LETTERS = "[b-f]{6,24}"
"""The toy language cycles a..g: the grammar forbids two of its seven letters and caps the
length, so greedy output must leave its usual path and end on its own."""


def constrained(pattern: str = LETTERS, **options: object) -> list[object]:
    grammar = OutputGrammar(regex_grammar(pattern), "response_format")
    return [
        replace(request("Copy: abcdefg", max_tokens=40), grammar=grammar, request_id="greedy"),
        replace(
            request("Sampled", max_tokens=40, temperature=1.0, seed=3, **options),  # type: ignore[arg-type]
            grammar=grammar,
            n=2,
            request_id="sampled",
        ),
    ]


def test_the_mask_allows_exactly_what_the_grammar_allows() -> None:
    tokenizer = FakeModel(n_vocab=32).grammar_tokenizer()
    constraint = TokenConstraint(tokenizer, regex_grammar("ab(cd)*e"))
    logits = np.arange(32, dtype=np.float32)

    def allowed() -> list[int]:
        return [int(t) for t in np.flatnonzero(np.isfinite(constraint.allowed(logits)))]

    assert allowed() == [3]  # "a"
    constraint.consume(3)
    twin = constraint.copy()
    constraint.consume(4)  # "b"
    assert allowed() == [5, 7, 31]  # "c" (two ids render it) or "e"
    assert constraint.allowed(logits)[5] == logits[5]  # allowed logits are untouched
    constraint.consume(7)  # "e": the grammar is complete
    assert allowed() == [EOS, END_OF_TURN]
    twin_logits = twin.allowed(logits)
    assert [int(t) for t in np.flatnonzero(np.isfinite(twin_logits))] == [4]  # still after "a"


def test_grammars_that_cannot_compile_say_why() -> None:
    with pytest.raises(GrammarError, match="unclosed group"):
        json_grammar({"type": "string", "pattern": "(("})
    with pytest.raises(GrammarError, match="not"):
        json_grammar({"not": {"type": "string"}})
    assert json_grammar({"not": {"type": "string"}}, strict=False)  # ignored when not strict
    assert json_grammar(None)  # any JSON object


def outputs(engine_config: object, model: FakeModel | None = None) -> list[Output]:
    async def scenario(client: EngineClient) -> list[Output]:
        cases = constrained()
        return list(await asyncio.gather(*(complete(client, c) for c in cases)))  # type: ignore[arg-type]

    return run(scenario, model, engine_config)  # type: ignore[arg-type]


def test_constrained_output_matches_the_grammar_and_ends_on_its_own() -> None:
    greedy, sampled = outputs(config(draft_max=0, ngram_drafts=False))
    texts = [greedy.texts[0], sampled.texts[0], sampled.texts[1]]
    assert all(re.fullmatch(LETTERS, text) for text in texts), texts
    assert sampled.texts[0] != sampled.texts[1]  # each choice has its own place in the grammar
    assert greedy.finish[0] == "stop" and greedy.tokens[0] == 25  # 24 letters, then the end


def test_drafts_the_grammar_forbids_are_rejected_and_change_nothing() -> None:
    model = FakeModel()
    outcomes: list[Progress] = []

    def unconstrained_greedy(history: list[int]) -> list[int]:
        """What the model says next without the grammar: it drafts forbidden letters."""
        tokens, drafted = list(history), []
        for _ in range(6):
            tokens.append(int(model.rule(tokens).argmax()))
            drafted.append(tokens[-1])
        return drafted

    async def scenario(client: EngineClient) -> list[Output]:
        client.follow_progress(True)
        client.add_listener(outcomes.extend)
        client.add_listener(scout_that_drafts(client, unconstrained_greedy))
        cases = constrained()
        return list(await asyncio.gather(*(complete(client, c) for c in cases)))  # type: ignore[arg-type]

    drafted = run(scenario, model, config(draft_max=6))
    plain = outputs(config(draft_max=0, ngram_drafts=False))
    assert [o.texts for o in drafted] == [o.texts for o in plain]
    scout = [o for o in outcomes if isinstance(o, DraftOutcome) and o.source == SCOUT]
    assert sum(o.proposed for o in scout) > sum(o.accepted for o in scout)
