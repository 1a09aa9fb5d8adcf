"""The generic tool-call format on literal text: reading a streamed reply into content and
calls, however it is split; writing earlier calls back; grammars llguidance accepts."""

import json

import llguidance
import pytest

from shard.api.tool_calls import (
    ArgumentsAdded,
    CallStarted,
    Content,
    Function,
    PastCall,
    ReadEvent,
    ToolCallReader,
    grammar,
    instruction,
    written_call,
)
from shard.engine.constraint import checked_lark

WEATHER = Function(
    "get_weather",
    "Weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    strict=True,
)
TIME = Function("get_time", None, None)

TWO_CALLS = (
    '<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>\n'
    '<tool_call>{"name":"get_time","arguments":{"tz":"}</tool_call>\\"{["}}</tool_call>'
)


def read(text: str, size: int) -> tuple[ToolCallReader, list[ReadEvent]]:
    reader, events = ToolCallReader(), []
    for start in range(0, len(text), size):
        events += reader.feed(text[start : start + size])
    return reader, events + reader.finish()


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_calls_are_read_however_the_stream_is_split(size: int) -> None:
    reader, events = read(TWO_CALLS, size)
    assert [(c.index, c.name, c.arguments, c.complete) for c in reader.calls] == [
        (0, "get_weather", '{"city":"Paris"}', True),
        (1, "get_time", '{"tz":"}</tool_call>\\"{["}', True),  # a string may hold anything
    ]
    assert reader.content == ""
    started = [e.call.name for e in events if isinstance(e, CallStarted)]
    assert started == ["get_weather", "get_time"]
    for call in reader.calls:  # the fragments streamed add up to each call's arguments
        fragments = [e.text for e in events if isinstance(e, ArgumentsAdded) and e.call is call]
        assert "".join(fragments) == call.arguments and json.loads(call.arguments)
    assert len({call.id for call in reader.calls}) == 2


@pytest.mark.parametrize("size", [1, 3, 1000])
def test_a_plain_answer_is_content(size: int) -> None:
    reader, events = read("<tool>? No: it is sunny.", size)
    assert reader.calls == []
    assert reader.content == "<tool>? No: it is sunny."
    assert "".join(e.text for e in events if isinstance(e, Content)) == reader.content


def test_a_call_cut_short_stays_incomplete_and_keeps_what_arrived() -> None:
    reader, events = read('<tool_call>{"name":"get_weather","arguments":{"city":"Pa', 4)
    (call,) = reader.calls
    assert (call.arguments, call.complete) == ('{"city":"Pa', False)
    assert "".join(e.text for e in events if isinstance(e, ArgumentsAdded)) == '{"city":"Pa'


def test_an_undecided_start_that_never_became_a_call_is_content() -> None:
    reader, events = read("<tool_ca", 3)
    assert reader.content == "<tool_ca" and events == [Content("<tool_ca")]


def test_earlier_calls_are_written_as_the_model_writes_them() -> None:
    reader, _ = read(written_call(PastCall("get_weather", '{ "city": "Paris" }')), 7)
    assert [(c.name, c.arguments) for c in reader.calls] == [("get_weather", '{"city":"Paris"}')]
    assert written_call(PastCall("f", "not json")).endswith('"arguments":not json}</tool_call>')


def test_the_instruction_offers_every_function_and_says_what_is_required() -> None:
    text = instruction([WEATHER, TIME], "required", parallel=False)
    assert '{"name":"get_weather","description":"Weather in a city","parameters":' in text
    assert '"name":"get_time"' in text and "You must call a function now." in text
    assert "one call per line" not in text
    named = instruction([WEATHER, TIME], "get_time", parallel=True)
    assert "You must call the function get_time now." in named and "one call per line" in named


def accepts(lark: str, text: str) -> bool:
    """Whether the grammar allows exactly `text` (checked bytewise, without a model)."""
    tokenizer = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_ByteVocabulary()))
    matcher = llguidance.LLMatcher(tokenizer, checked_lark(lark), log_level=0)
    tokens = list(text.encode())
    return matcher.validate_tokens(tokens) == len(tokens) and (
        matcher.consume_tokens(tokens) and matcher.is_accepting()
    )


class _ByteVocabulary:
    """One token per byte, and an end token."""

    eos_token_id, bos_token_id = 256, None
    tokens = [bytes([b]) for b in range(256)] + [b"\xff<eos>"]
    special_token_ids = (256,)

    def __call__(self, text: bytes) -> list[int]:
        return list(text)


def test_grammars_hold_replies_to_the_format_and_the_schemas() -> None:
    required = grammar([WEATHER, TIME], "required", parallel=True)
    assert accepts(required, TWO_CALLS)
    assert not accepts(required, "It is sunny.")
    assert not accepts(required, '<tool_call>{"name":"get_weather","arguments":{}}</tool_call>')
    single = grammar([WEATHER, TIME], "required", parallel=False)
    assert not accepts(single, TWO_CALLS)
    named = grammar([WEATHER, TIME], "get_time", parallel=True)
    assert accepts(named, '<tool_call>{"name":"get_time","arguments":{}}</tool_call>')
    assert not accepts(named, TWO_CALLS.split("\n")[0])
    auto = grammar([WEATHER, TIME], "auto", parallel=True)
    assert accepts(auto, "It is sunny.") and accepts(auto, TWO_CALLS)
    assert not accepts(auto, "<b>sunny</b>")
    answer = grammar([WEATHER], "auto", parallel=True, answer_schema={"type": "integer"})
    assert accepts(answer, "42") and not accepts(answer, "It is sunny.")


def test_parameters_that_refer_to_their_definitions_keep_them() -> None:
    """pydantic writes nested models as `$defs` and `$ref`s, as the OpenAI SDK's
    pydantic_function_tool sends them; under `arguments` they are moved to the root."""
    nested = Function(
        "book",
        None,
        {
            "type": "object",
            "properties": {"place": {"$ref": "#/$defs/Place"}},
            "required": ["place"],
            "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}},
        },
        strict=True,
    )
    lark = grammar([nested, WEATHER], "required", parallel=False)
    call = '<tool_call>{"name":"book","arguments":{"place":{"city":"Oslo"}}}</tool_call>'
    assert accepts(lark, call)
    assert not accepts(lark, call.replace('{"city":"Oslo"}', '"Oslo"'))
