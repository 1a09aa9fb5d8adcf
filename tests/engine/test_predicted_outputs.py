"""Predicted Outputs on the fake model: a right prediction is drafted and accepted, a wrong
one rejected, and neither changes the output; usage counts the prediction tokens that
appeared in the output and those that did not, the same with drafts and without."""

from dataclasses import replace
from typing import Any

from shard.engine.client import EngineClient
from shard.engine.types import GenerationRequest
from tests.engine.test_worker import config, request, run
from tests.fake_model import FIRST_TEXT_TOKEN, FakeModel

SPAN = 32 - FIRST_TEXT_TOKEN
"""FakeModel(n_vocab=32).tokenize maps a character c to FIRST_TEXT_TOKEN + ord(c) % SPAN."""


def text_for(tokens: list[int]) -> str:
    """Text the fake model tokenizes into exactly `tokens`."""
    return "".join(chr(3 * SPAN + token - FIRST_TEXT_TOKEN) for token in tokens)


async def generate(client: EngineClient, generation_request: GenerationRequest) -> dict[str, Any]:
    text, ids = "", []
    async with client.generate(generation_request) as generation:
        async for delta in generation.deltas():
            text += delta.text
            ids += list(delta.token_ids)
    return {
        "text": text,
        "ids": ids,
        "accepted": generation.prediction_accepted,
        "rejected": generation.prediction_rejected,
    }


CASES = [
    replace(request("Copy: abcabc", max_tokens=60), token_ids=True),
    replace(request("Sampled", max_tokens=60, temperature=0.9, seed=4), token_ids=True),
]


def test_a_prediction_drafts_without_changing_the_output() -> None:
    async def scenario(client: EngineClient) -> list[dict[str, Any]]:
        outcomes = []
        for case in CASES:
            plain = await generate(client, case)
            ids = list(plain["ids"])
            right = await generate(client, replace(case, prediction=text_for(ids)))
            edited = ids[:20] + [FIRST_TEXT_TOKEN + 5] * 6 + ids[26:]
            close = await generate(client, replace(case, prediction=text_for(edited)))
            wrong = await generate(client, replace(case, prediction=text_for([7, 9, 11] * 20)))
            outcomes += [plain, right, close, wrong]
        return outcomes

    drafted = run(scenario, FakeModel(), config(draft_max=8, ngram_drafts=False))
    undrafted = run(scenario, FakeModel(), config(draft_max=0, ngram_drafts=False))
    assert drafted == undrafted  # texts and usage alike
    for plain, right, close, wrong in (drafted[:4], drafted[4:]):
        assert right["text"] == close["text"] == wrong["text"] == plain["text"]
        assert (plain["accepted"], plain["rejected"]) == (0, 0)  # no prediction, no counts
        assert (right["accepted"], right["rejected"]) == (60, 0), right
        assert close["accepted"] >= 50 and close["rejected"] == 60 - close["accepted"], close
        assert wrong["accepted"] < 10 and wrong["rejected"] > 50, wrong
