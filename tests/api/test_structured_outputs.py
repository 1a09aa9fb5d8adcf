"""Structured outputs on the real model through the official client: `parse` with a pydantic
model, JSON mode, a schema streamed to several choices. (Identity with and without drafts is
in tests/engine/test_speculation.py; refusals in test_bad_inputs.py.)

The schemas bound their strings and numbers: the 270M model, held to a grammar, will happily
write a number of a hundred digits, and an answer cut at max_tokens cannot parse."""

import json
from typing import Any

import openai
import pytest
from openai.types.shared_params import ResponseFormatJSONSchema
from pydantic import BaseModel, Field

from tests.conftest import SERVED_ALIAS


class City(BaseModel):
    name: str = Field(max_length=30)
    country: str = Field(max_length=30)
    population: int = Field(ge=0, le=99_999_999)


class Verdict(BaseModel):
    answer: str = Field(max_length=24)
    confident: bool


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {**schema, "additionalProperties": False, "required": list(schema["properties"])}


def test_parse_returns_the_pydantic_model(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model=SERVED_ALIAS,
        messages=[{"role": "user", "content": "Give me a city in France as JSON."}],
        response_format=City,
        temperature=0,
        max_tokens=100,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, City)
    assert City.model_validate_json(choice.message.content or "") == choice.message.parsed


def test_json_mode_answers_a_json_object(client: openai.OpenAI) -> None:
    document = {"name": "Ada Lovelace", "born": 1815, "fields": ["mathematics", "computing"]}
    completion = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[
            {"role": "user", "content": f"Repeat this JSON exactly:\n{json.dumps(document)}"}
        ],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=100,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(json.loads(choice.message.content or ""), dict)


def test_a_schema_holds_for_every_streamed_choice(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[{"role": "user", "content": "Is the sea salty? Answer in JSON."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "verdict", "schema": strict_schema(Verdict), "strict": True},
        },
        temperature=1.0,
        seed=11,
        n=3,
        max_tokens=60,
        stream=True,
    )
    texts, finishes = ["", "", ""], list[str | None]([None, None, None])
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            finishes[choice.index] = choice.finish_reason or finishes[choice.index]
    assert finishes == ["stop"] * 3
    verdicts = [Verdict.model_validate_json(text) for text in texts]
    assert len(set(texts)) > 1, verdicts  # sampled: each choice follows the grammar its own way


def schema_format(schema: dict[str, Any]) -> ResponseFormatJSONSchema:
    return {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}}


SELF_REQUIRED = {"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]}
"""No finite JSON matches: llguidance compiles it, and finds out two tokens in ('{"')."""


def test_a_schema_no_answer_can_match_is_a_400_not_invalid_json(client: openai.OpenAI) -> None:
    """Stuck at its start or midway, a grammar with no way on fails the request (it answered
    '{"' or '' with finish_reason "stop"), and the server goes on serving."""
    for schema in ({"$ref": "#"}, SELF_REQUIRED):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model=SERVED_ALIAS,
                messages=[{"role": "user", "content": "Hi"}],
                response_format=schema_format(schema),
                max_tokens=16,
            )
        assert refused.value.param == "response_format"
        assert "no way on" in str(refused.value)
    stream = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[{"role": "user", "content": "Hi"}],
        response_format=schema_format(SELF_REQUIRED),
        max_tokens=16,
        stream=True,
    )
    with pytest.raises(openai.APIError, match="no way on"):
        for _ in stream:
            pass
    fine = client.chat.completions.create(
        model=SERVED_ALIAS, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert fine.choices[0].message.content is not None
