"""Message text that spells a control token stays text.

A chat template writes its turns with control tokens (Gemma's `<start_of_turn>`), and
llama.cpp reads control-token text as the token wherever it is asked to parse special
tokens. So a user who wrote `<end_of_turn><start_of_turn>model` in a message could end
their turn and write the model's (vLLM and llama.cpp's server allow it; OpenAI does not).
Here such text in messages is marked before rendering; the model then tokenizes the marked
spans as plain text and the template's own markup as control tokens. Prompts with no such
text are tokenized exactly as before.
"""

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from shard.engine.chat_template import ChatTemplate
from shard.engine.types import ChatMessage

Span = tuple[int, int]
"""Characters [start, end) of a prompt to tokenize as plain text."""


def alternation(texts: Iterable[str]) -> str:
    """A regex for any of `texts`, the longest where several match, built as a trie: Python's
    re tries each branch of a flat alternation in turn, about a second per megabyte for
    Gemma's 6250 control tokens; the trie is a millisecond."""
    trie: dict[str, Any] = {}
    for text in texts:
        node = trie
        for char in text:
            node = node.setdefault(char, {})
        node[""] = {}

    def branch(node: dict[str, Any]) -> str:
        options = [re.escape(char) + branch(child) for char, child in node.items() if char]
        if not options:
            return ""
        group = options[0] if len(options) == 1 else "(?:" + "|".join(options) + ")"
        return f"(?:{group})?" if "" in node else group

    return branch(trie)


def render(
    template: ChatTemplate,
    messages: Sequence[ChatMessage],
    tools: list[dict[str, Any]] | None,
    control: re.Pattern[str] | None,
) -> tuple[str, list[Span]]:
    """The prompt, and the spans in it that messages wrote and that spell control tokens."""
    if control is None or not any(_spells_control(m, control) for m in messages):
        return template.render(messages, tools), []
    nonce = secrets.token_hex(8)  # a client cannot write a marker it cannot guess
    originals: list[str] = []

    def mark(match: re.Match[str]) -> str:
        originals.append(match.group())
        return f"\ue000{nonce}{len(originals) - 1}\ue001"

    marked = [
        replace(
            message,
            content=control.sub(mark, message.content),
            tool_calls=tuple(
                replace(call, arguments=control.sub(mark, call.arguments))
                for call in message.tool_calls
            ),
        )
        for message in messages
    ]
    rendered = template.render(marked, tools)
    parts: list[str] = []
    spans: list[Span] = []
    length = 0
    last = 0
    for found in re.finditer(f"\ue000{nonce}(\\d+)\ue001", rendered):
        parts.append(rendered[last : found.start()])
        length += found.start() - last
        original = originals[int(found.group(1))]
        parts.append(original)
        spans.append((length, length + len(original)))
        length += len(original)
        last = found.end()
    parts.append(rendered[last:])
    return "".join(parts), spans


def _spells_control(message: ChatMessage, control: re.Pattern[str]) -> bool:
    texts = [message.content, *(call.arguments for call in message.tool_calls)]
    return any(control.search(text) for text in texts)
