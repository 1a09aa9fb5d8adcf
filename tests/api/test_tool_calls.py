"""Tool calls on the real model through the official clients: a round trip with
`tool_choice="required"`, a named function, the streamed shape, refusals, and LangChain's
`bind_tools` and `with_structured_output`. The format itself is tested on literal text in
test_tool_call_format.py.

Schemas bound their strings and forbid extra properties: the 270M model, held to a grammar,
otherwise goes on writing."""

import json
from typing import Any

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletionMessageFunctionToolCall
from pydantic import BaseModel, Field

from tests.conftest import SERVED_ALIAS, TEST_KEY, RunningOracle, auth


def function(name: str, description: str, parameter: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {parameter: {"type": "string", "maxLength": 24}},
                "required": [parameter],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }


WEATHER = function("get_weather", "The current weather in a city", "city")
TIME = function("get_time", "The local time in a time zone", "timezone")
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_a_required_call_round_trip(client: openai.OpenAI, oracle: RunningOracle) -> None:
    first = client.chat.completions.create(  # type: ignore[call-overload]
        model=SERVED_ALIAS,
        messages=QUESTION,
        tools=[WEATHER, TIME],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        max_tokens=60,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in ("get_weather", "get_time")
    arguments = json.loads(call.function.arguments)
    assert list(arguments) == ["city" if call.function.name == "get_weather" else "timezone"]
    assert isinstance(next(iter(arguments.values())), str)

    history: list[Any] = [*QUESTION, choice.message]  # the SDK's own message object
    result = {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear", "c": 18}'}
    second = client.chat.completions.create(  # type: ignore[call-overload]
        model=SERVED_ALIAS,
        messages=[*history, result],
        tools=[WEATHER, TIME],
        tool_choice="none",
        temperature=0,
        max_tokens=30,
    )
    assert second.choices[0].message.tool_calls is None
    assert second.choices[0].message.content
    stored = httpx.get(
        f"{oracle.base_url}/v1/chat/completions/{second.id}/messages", headers=auth(TEST_KEY)
    ).json()["data"]
    assert [m["role"] for m in stored] == ["user", "assistant", "tool"]
    assert stored[1]["tool_calls"][0]["id"] == call.id and stored[2]["tool_call_id"] == call.id


def test_a_named_function_is_the_one_called_and_streams_as_openai_streams_calls(
    client: openai.OpenAI,
) -> None:
    options: dict[str, Any] = {
        "model": SERVED_ALIAS,
        "messages": QUESTION,
        "tools": [WEATHER, TIME],
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        "parallel_tool_calls": False,
        "temperature": 0,
        "max_tokens": 60,
    }
    whole = client.chat.completions.create(**options)
    (call,) = whole.choices[0].message.tool_calls or []
    assert call.function.name == "get_time" and whole.choices[0].message.content is None

    names, arguments, ids, finish = [], "", set(), None
    for chunk in client.chat.completions.create(**options, stream=True):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for part in choice.delta.tool_calls or []:
                assert part.index == 0
                if part.id:
                    ids.add(part.id)
                if part.function and part.function.name:
                    names.append(part.function.name)
                arguments += (part.function.arguments or "") if part.function else ""
    assert (names, arguments, finish) == (["get_time"], call.function.arguments, "tool_calls")
    assert len(ids) == 1


def test_auto_answers_in_text_or_in_calls_that_parse(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[{"role": "user", "content": "Say hello."}],
        tools=[WEATHER],  # type: ignore[list-item]
        temperature=0,
        max_tokens=40,
    )
    message = completion.choices[0].message
    if message.tool_calls:
        for call in message.tool_calls:
            assert isinstance(call, ChatCompletionMessageFunctionToolCall)
            assert json.loads(call.function.arguments)
    else:
        assert message.content and not message.content.startswith("<tool_call>")


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "tools[0].function.name",
        ),
        (
            {
                "tools": [
                    function("f", "", "p")
                    | {"function": {"name": "f", "strict": True, "parameters": {"not": {}}}}
                ]
            },
            "tools",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "integer"}},
                    }
                ]
            },
            "tools[0].function.parameters",
        ),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"$defs": "x"}}}
                ]
            },
            "tools[0].function.parameters",
        ),
        (  # deeper than the grammar's own copy of the schema can recurse
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {"x": json.loads("[" * 500 + "]" * 500)},
                        },
                    }
                ]
            },
            "tools",
        ),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "hi", "tool_call_id": "a"}]}, "messages[0]"),
    ],
)
def test_tool_mistakes_are_a_400_naming_the_field(
    http: httpx.Client, change: dict[str, Any], param: str
) -> None:
    body = {"model": SERVED_ALIAS, "messages": QUESTION, "max_tokens": 2, **change}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


class Weather(BaseModel):
    """The weather in a city."""

    city: str = Field(max_length=24)


class Place(BaseModel):
    name: str = Field(max_length=24)
    country: str = Field(max_length=24)


def test_langchain_binds_tools_and_structures_output(oracle: RunningOracle) -> None:
    chat = ChatOpenAI(
        model=SERVED_ALIAS,
        base_url=f"{oracle.base_url}/v1",
        api_key=TEST_KEY,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=60,  # type: ignore[call-arg]
        max_retries=0,
    )
    with_tool = chat.bind_tools([Weather], tool_choice="Weather", parallel_tool_calls=False)
    reply = with_tool.invoke("What is the weather in Paris?")
    (call,) = reply.tool_calls
    assert call["name"] == "Weather" and isinstance(call["args"]["city"], str)
    place = chat.with_structured_output(Place).invoke("Name a city in Italy.")
    assert isinstance(place, Place)
