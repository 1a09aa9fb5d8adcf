"""Chat messages to prompt text: the GGUF's Jinja template, or llama.cpp's built-in one.

Order of choice: `--chat-template` (a built-in name, Jinja text, or a file of Jinja text), then
the template stored in the GGUF, then llama.cpp's built-in template for the architecture
(Gemma 3 270M ships none, so it gets `gemma`).
"""

import ctypes
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import llama_cpp
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shard.engine.types import ChatMessage, PastToolCall

_FALLBACK_TEMPLATE = "chatml"


def builtin_template_names() -> list[str]:
    """Names llama.cpp can render natively (`llama_chat_builtin_templates`)."""
    count = llama_cpp.llama_chat_builtin_templates(None, 0)
    names = (ctypes.c_char_p * count)()
    llama_cpp.llama_chat_builtin_templates(names, count)
    return [name.decode() for name in names if name]


def builtin_for_architecture(architecture: str, names: Sequence[str]) -> str:
    """The built-in template for a GGUF architecture: exact name, else the longest prefix."""
    if architecture in names:
        return architecture
    prefixes = [name for name in names if architecture.startswith(name)]
    return max(prefixes, key=len) if prefixes else _FALLBACK_TEMPLATE


class TemplateError(ValueError):
    """The messages cannot be rendered by this model's template (a client error)."""


class ChatTemplate:
    """Renders messages with either a built-in llama.cpp template or a Jinja template."""

    def __init__(
        self, *, builtin: str | None = None, jinja: str | None = None, bos: str = "", eos: str = ""
    ) -> None:
        if (builtin is None) == (jinja is None):
            raise ValueError("give exactly one of builtin or jinja")
        self.builtin = builtin
        self._bos = bos
        self._eos = eos
        self._jinja: jinja2.Template | None = None
        self.renders_tools = False
        """A Jinja template that reads `tools` offers them and writes calls its own way."""
        if jinja is not None:
            environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            environment.globals["raise_exception"] = _raise_template_error
            self._jinja = environment.from_string(jinja)
            variables = meta.find_undeclared_variables(environment.parse(jinja))
            self.renders_tools = "tools" in variables

    @property
    def description(self) -> str:
        if self.builtin:
            return f"built-in {self.builtin}"
        return "jinja, renders tools" if self.renders_tools else "jinja"

    @classmethod
    def choose(
        cls,
        override: str | None,
        embedded: str | None,
        architecture: str,
        bos: str,
        eos: str,
    ) -> "ChatTemplate":
        """Pick the template by the precedence in this module's docstring."""
        names = builtin_template_names()
        if override is not None:
            if override in names:
                return cls(builtin=override)
            candidate = Path(override)
            text = candidate.read_text() if candidate.is_file() else override
            return cls(jinja=text, bos=bos, eos=eos)
        if embedded:
            return cls(jinja=embedded, bos=bos, eos=eos)
        return cls(builtin=builtin_for_architecture(architecture, names))

    def render(
        self, messages: Sequence[ChatMessage], tools: list[dict[str, Any]] | None = None
    ) -> str:
        """Prompt text ending where the assistant's reply begins; `tools` (OpenAI's list) only
        for a template that `renders_tools`.

        OpenAI's `developer` role is its newer name for `system`; templates know only the latter.
        """
        messages = [
            ChatMessage("system", m.content) if m.role == "developer" else m for m in messages
        ]
        if self._jinja is not None:
            try:
                return self._jinja.render(
                    messages=[_message_for_jinja(m) for m in messages],
                    tools=tools,
                    add_generation_prompt=True,
                    bos_token=self._bos,
                    eos_token=self._eos,
                )
            except jinja2.TemplateError as error:
                raise TemplateError(f"chat template failed: {error}") from error
        return self._render_builtin(messages)

    def _render_builtin(self, messages: Sequence[ChatMessage]) -> str:
        assert self.builtin is not None
        encoded = [(m.role.encode(), m.content.encode()) for m in messages]
        chat = (llama_cpp.llama_chat_message * len(encoded))()
        for slot, (role, content) in zip(chat, encoded, strict=True):
            slot.role = role
            slot.content = content
        capacity = 2 * sum(len(r) + len(c) for r, c in encoded) + 256
        for _ in range(2):
            buffer = ctypes.create_string_buffer(capacity)
            size = llama_cpp.llama_chat_apply_template(
                self.builtin.encode(), chat, len(encoded), True, buffer, capacity
            )
            if size < 0:
                raise TemplateError(f"the {self.builtin} template cannot render these messages")
            if size <= capacity:
                return buffer.raw[:size].decode(errors="replace")
            capacity = size
        raise TemplateError("chat template output kept growing")


def _raise_template_error(message: str) -> None:
    raise TemplateError(message)


def _message_for_jinja(message: ChatMessage) -> dict[str, Any]:
    """A message as chat templates read it (Hugging Face's convention: a call's arguments as
    an object where they parse as one)."""
    fields: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        fields["tool_calls"] = [_call_for_jinja(call) for call in message.tool_calls]
    if message.tool_call_id is not None:
        fields["tool_call_id"] = message.tool_call_id
    return fields


def _call_for_jinja(call: PastToolCall) -> dict[str, Any]:
    try:
        arguments: Any = json.loads(call.arguments)
    except ValueError:
        arguments = call.arguments
    function = {"name": call.name, "arguments": arguments}
    return {"id": call.id, "type": "function", "function": function}
