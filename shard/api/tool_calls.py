"""Tool calls in one text format, Hermes's and Qwen's, for every model:

- a call is written `<tool_call>{"name":"NAME","arguments":{...}}</tool_call>`, several calls
  one per line;
- a grammar holds the model to that format and to each function's parameters schema
  (`grammar`), so a call always parses;
- `ToolCallReader` reads a choice's output as it streams, into content or calls.

How the tools and earlier calls reach the prompt depends on the chat template. A Jinja
template that reads `tools` (the GGUF's own, or `--chat-template`) gets them as they are, and
writes the offer, the calls and the results its own way. Any other (llama.cpp's built-in ones;
the embedded Gemma 3 270M has no template of its own) gets them written by this module: the
tools described in a system message (`instruction`), earlier calls as the model writes them
(`written_call`) and results as `<tool_response>...</tool_response>` in a user turn.
"""

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
_NAME_START = CALL_OPEN + '{"name":"'
_ARGUMENTS_START = '","arguments":'
_CALL_END = "}" + CALL_CLOSE
_JSON_OPTIONS = {"whitespace_flexible": False}  # compact, as the reader expects

ToolChoice = Literal["auto", "required"] | str
"""auto, required, or the one function's name that must be called."""


@dataclass(frozen=True)
class Function:
    """A function the model may call."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool = False


@dataclass(frozen=True)
class PastCall:
    """A call from an earlier assistant turn, as the client sends it back."""

    name: str
    arguments: str


def instruction(functions: Sequence[Function], choice: ToolChoice, parallel: bool) -> str:
    """The system text that offers the tools and says how to call them."""
    lines = [
        "You can call functions. To call one, reply with exactly this and nothing else:",
        f'{CALL_OPEN}{{"name":"FUNCTION NAME","arguments":{{ARGUMENTS AS JSON}}}}{CALL_CLOSE}',
    ]
    if parallel:
        lines.append("To call several functions, write one call per line.")
    if choice == "required":
        lines.append("You must call a function now.")
    elif choice != "auto":
        lines.append(f"You must call the function {choice} now.")
    lines.append("The functions:")
    for function in functions:
        described: dict[str, Any] = {"name": function.name}
        described["description"] = function.description or ""
        described["parameters"] = function.parameters or {"type": "object"}
        lines.append(json.dumps(described, separators=(",", ":")))
    return "\n".join(lines)


def written_call(call: PastCall) -> str:
    """An earlier call as the model would have written it (arguments made compact if they
    are JSON, kept as sent if not)."""
    try:
        arguments = json.dumps(json.loads(call.arguments), separators=(",", ":"))
    except ValueError:
        arguments = call.arguments
    return f"{_NAME_START}{call.name}{_ARGUMENTS_START}{arguments}}}{CALL_CLOSE}"


def written_result(content: str) -> str:
    """A tool's result, as a user turn carries it back to the model."""
    return f"<tool_response>\n{content}\n</tool_response>"


def grammar(
    functions: Sequence[Function],
    choice: ToolChoice,
    parallel: bool,
    answer_schema: dict[str, Any] | None = None,
) -> str:
    """A Lark grammar (llguidance's dialect) for the reply: calls only, when a call is
    required; under `auto`, calls or an answer (any text not starting with "<", or JSON
    matching `answer_schema` when the request also has a response format)."""
    offered = [f for f in functions if choice in ("auto", "required") or f.name == choice]
    definitions: dict[str, Any] = {}
    call_schemas = [_call_schema(f, f"f{i}_", definitions) for i, f in enumerate(offered)]
    any_call: dict[str, Any] = (
        dict(call_schemas[0]) if len(call_schemas) == 1 else {"anyOf": call_schemas}
    )
    if definitions:
        any_call["$defs"] = definitions
    # llguidance reads its options at the top of each %json schema: compact, and lenient
    # (unimplemented keywords ignored) unless every function is strict
    lenient = not all(function.strict for function in offered)
    any_call["x-guidance"] = {**_JSON_OPTIONS, "lenient": lenient}
    rules = [
        "calls: call" + (' ("\\n" call)*' if parallel else ""),
        f'call: "{CALL_OPEN}" %json {json.dumps(any_call)} "{CALL_CLOSE}"',
    ]
    if choice != "auto":
        return "\n".join(["start: calls", *rules])
    if answer_schema is not None:
        answer = f"%json {json.dumps({**answer_schema, 'x-guidance': _JSON_OPTIONS})}"
        return "\n".join(["start: calls | answer", *rules, f"answer: {answer}"])
    return "\n".join(["start: calls | ANSWER", *rules, r"ANSWER: /[^<](.|\n)*/"])


def _call_schema(function: Function, prefix: str, definitions: dict[str, Any]) -> dict[str, Any]:
    """One function's call as a JSON schema. Its parameters sit under `arguments`, so the
    definitions they refer to (`$defs`, `definitions`, as pydantic writes nested models) move
    to the grammar's root, renamed with `prefix` so that functions' names never clash."""
    parameters = {"type": "object", **(function.parameters or {})}  # checked: no other type
    local = {**parameters.pop("definitions", {}), **parameters.pop("$defs", {})}
    renamed = {
        f"#/{kind}/{name}": f"#/$defs/{prefix}{name}"
        for kind in ("$defs", "definitions")
        for name in local
    }
    for name, schema in local.items():
        definitions[prefix + name] = _with_refs(schema, renamed)
    return {
        "type": "object",
        "properties": {
            "name": {"const": function.name},
            "arguments": _with_refs(parameters, renamed),
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def _with_refs(schema: Any, renamed: dict[str, str]) -> Any:
    """A copy of `schema` with every `$ref` found in `renamed` replaced."""
    if isinstance(schema, dict):
        return {
            key: renamed.get(value, value)
            if key == "$ref" and isinstance(value, str)
            else _with_refs(value, renamed)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_with_refs(item, renamed) for item in schema]
    return schema


@dataclass
class ToolCall:
    """A call the model wrote; `arguments` grows as it streams, `complete` once closed."""

    index: int
    name: str
    id: str = field(default_factory=lambda: f"call_{secrets.token_hex(12)}")
    arguments: str = ""
    complete: bool = False


@dataclass(frozen=True)
class Content:
    text: str


@dataclass(frozen=True)
class CallStarted:
    call: ToolCall


@dataclass(frozen=True)
class ArgumentsAdded:
    call: ToolCall
    text: str


ReadEvent = Content | CallStarted | ArgumentsAdded


class ToolCallReader:
    """One choice's output as it streams: plain content, or calls in the generic format (the
    grammar allows nothing else, so anything unexpected is kept as content)."""

    def __init__(self) -> None:
        self.content = ""
        self.calls: list[ToolCall] = []
        self._mode: Literal["undecided", "content", "calls"] = "undecided"
        self._held = ""
        self._phase: Literal["open", "name", "arguments", "close"] = "open"
        self._json = _JsonEnd()

    def feed(self, text: str) -> list[ReadEvent]:
        self._held += text
        if self._mode == "undecided":
            if CALL_OPEN.startswith(self._held):
                return []
            self._mode = "calls" if self._held.startswith(CALL_OPEN) else "content"
        if self._mode == "content":
            return self._as_content()
        return self._read_calls()

    def finish(self) -> list[ReadEvent]:
        """The output ended: what is still held goes out (a cut-off call stays incomplete)."""
        return self._as_content() if self._mode != "calls" else []

    def _as_content(self) -> list[ReadEvent]:
        text, self._held = self._held, ""
        self.content += text
        return [Content(text)] if text else []

    def _read_calls(self) -> list[ReadEvent]:
        events: list[ReadEvent] = []
        while True:
            if self._phase == "open":
                self._held = self._held.lstrip("\n")
                if _NAME_START.startswith(self._held):
                    return events
                if not self._held.startswith(_NAME_START):
                    return events + self._as_content()
                self._held = self._held[len(_NAME_START) :]
                self._phase = "name"
            elif self._phase == "name":
                end = self._held.find(_ARGUMENTS_START)
                if end < 0:
                    return events
                call = ToolCall(len(self.calls), self._held[:end])
                self.calls.append(call)
                events.append(CallStarted(call))
                self._held = self._held[end + len(_ARGUMENTS_START) :]
                self._phase = "arguments"
            elif self._phase == "arguments":  # JSON, read to its end (strings may hold "}")
                closed = self._json.end_in(self._held)
                text = self._held if closed is None else self._held[:closed]
                self._held = self._held[len(text) :]
                events += self._arguments(text)
                if closed is None:
                    return events
                self._json = _JsonEnd()
                self._phase = "close"
            else:
                if not self._held.startswith(_CALL_END):
                    if _CALL_END.startswith(self._held):
                        return events  # the rest of it is still to come
                    return events + self._as_content()
                self.calls[-1].complete = True
                self._held = self._held[len(_CALL_END) :]
                self._phase = "open"

    def _arguments(self, text: str) -> list[ReadEvent]:
        if not text:
            return []
        call = self.calls[-1]
        call.arguments += text
        return [ArgumentsAdded(call, text)]


class _JsonEnd:
    """Finds where a JSON object or array ends in text that arrives in pieces: brackets are
    counted outside strings only, so a `}` or a closing tag inside a string is no end."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False

    def end_in(self, text: str) -> int | None:
        """The index just past the value's last character, if it is in `text`."""
        for index, char in enumerate(text):
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif char == "\\":
                    self.escaped = True
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
            elif char in "}]":
                self.depth -= 1
                if self.depth == 0:
                    return index + 1
        return None
