"""Chat templates: llama.cpp's built-ins by name or architecture, Jinja text or files."""

from pathlib import Path
from typing import Any

import httpx
import pytest

from shard.engine.chat_template import ChatTemplate, TemplateError, builtin_for_architecture
from shard.engine.types import ChatMessage, PastToolCall
from tests.conftest import ADMIN_KEY, auth, start_oracle, stop_oracle
from tests.tools_template import TOOLS_TEMPLATE

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")]
JINJA = (
    "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_architecture_maps_to_the_longest_builtin_prefix() -> None:
    names = ["chatml", "gemma", "llama3", "llama2"]
    assert builtin_for_architecture("gemma3", names) == "gemma"
    assert builtin_for_architecture("llama3", names) == "llama3"
    assert builtin_for_architecture("mystery", names) == "chatml"


def test_builtin_gemma_renders_turns_and_folds_system_into_user() -> None:
    text = ChatTemplate.choose(None, None, "gemma3", "<bos>", "<eos>").render(MESSAGES)
    assert text == "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_developer_is_rendered_as_system() -> None:
    template = ChatTemplate.choose("chatml", None, "gemma3", "", "")
    as_developer = template.render([ChatMessage("developer", "Be brief."), MESSAGES[1]])
    assert as_developer == template.render(MESSAGES)
    assert "<|im_start|>system\nBe brief." in as_developer


def test_embedded_jinja_wins_over_the_architecture_and_override_wins_over_both(
    tmp_path: Path,
) -> None:
    embedded = ChatTemplate.choose(None, JINJA, "gemma3", "<bos>", "<eos>")
    assert embedded.render(MESSAGES) == "<|system|>Be brief.\n<|user|>Hi\n<|assistant|>"
    path = tmp_path / "template.jinja"
    path.write_text("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}")
    from_file = ChatTemplate.choose(str(path), JINJA, "gemma3", "<bos>", "<eos>")
    assert from_file.render(MESSAGES) == "<bos>Be brief.Hi"


def test_template_errors_are_client_errors() -> None:
    raising = ChatTemplate.choose(
        "{{ raise_exception('only user messages') }}", None, "gemma3", "", ""
    )
    with pytest.raises(TemplateError, match="only user messages"):
        raising.render(MESSAGES)


def test_oracle_uses_the_chat_template_flag(tmp_path: Path) -> None:
    body: dict[str, Any] = {
        "model": "gemma-3-270m-q4_k_m",
        "messages": [{"role": "user", "content": "Hi"}],
    }
    body["max_tokens"] = 1
    counts: dict[str, int] = {}
    for flag in ("gemma", JINJA):
        log_dir = tmp_path / str(len(counts))
        log_dir.mkdir()
        running = start_oracle(log_dir, "--chat-template", flag)
        try:
            response = httpx.post(
                running.base_url + "/v1/chat/completions", json=body, headers=auth(ADMIN_KEY)
            )
            assert response.status_code == 200, response.text
            counts[flag] = response.json()["usage"]["prompt_tokens"]
        finally:
            stop_oracle(running)
    assert counts["gemma"] != counts[JINJA]


def test_a_jinja_template_that_reads_tools_renders_them_and_the_calls_itself() -> None:
    template = ChatTemplate(jinja=TOOLS_TEMPLATE)
    assert template.renders_tools and template.description == "jinja, renders tools"
    assert not ChatTemplate(jinja=JINJA).renders_tools
    assert not ChatTemplate(builtin="gemma").renders_tools
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    conversation = [
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", (PastToolCall("call_1", "get_weather", '{"city":"Paris"}'),)),
        ChatMessage("tool", '{"sky":"clear"}', tool_call_id="call_1"),
    ]
    text = template.render(conversation, [weather])
    assert text.startswith("<start_of_turn>user\nYou may call functions.")
    assert '<tools>{"function": {"name": "get_weather", "parameters": {}}' in text
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>' in text
    assert '<tool_response id="call_1">{"sky":"clear"}</tool_response>' in text
    assert text.endswith("<start_of_turn>model\n")
    assert "<tools>" not in template.render(conversation)  # no tools offered: none shown
