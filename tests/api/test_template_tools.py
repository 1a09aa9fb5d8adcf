"""Tools through a chat template that renders them (`--chat-template` here; a GGUF's own
works the same): the oracle hands the template the tools, calls and results as they are,
says so in /system/status, and the calls still come back in OpenAI's shape, held to each
function's schema."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_tool_calls import QUESTION, TIME, WEATHER
from tests.conftest import ADMIN_KEY, SERVED_ALIAS, RunningOracle, auth, start_oracle, stop_oracle
from tests.tools_template import TOOLS_TEMPLATE


@pytest.fixture(scope="module")
def templated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOracle]:
    folder = tmp_path_factory.mktemp("template-tools")
    template = folder / "tools.jinja"
    template.write_text(TOOLS_TEMPLATE)
    running = start_oracle(
        folder, "--served-model-name", SERVED_ALIAS, "--chat-template", str(template)
    )
    yield running
    stop_oracle(running)


def test_the_template_renders_the_tools_and_the_round_trip_works(
    templated: RunningOracle, tmp_path: Path
) -> None:
    status = httpx.get(f"{templated.base_url}/system/status", headers=auth(ADMIN_KEY)).json()
    assert status["model"]["chat_template"] == "jinja, renders tools"
    client = templated.client(max_retries=0, timeout=120)
    options: dict[str, Any] = {"model": SERVED_ALIAS, "temperature": 0, "max_tokens": 60}
    first = client.chat.completions.create(  # type: ignore[call-overload]
        messages=QUESTION,
        tools=[WEATHER, TIME],
        tool_choice="required",
        parallel_tool_calls=False,
        **options,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name in ("get_weather", "get_time")
    assert isinstance(json.loads(call.function.arguments), dict)
    # the template's own offer is in the prompt: it costs more prompt tokens than the question
    plain = client.chat.completions.create(messages=QUESTION, **options)  # type: ignore[arg-type]
    assert first.usage is not None and plain.usage is not None
    assert first.usage.prompt_tokens > plain.usage.prompt_tokens + 40

    result = {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear", "c": 18}'}
    second = client.chat.completions.create(  # type: ignore[call-overload]
        messages=[*QUESTION, choice.message, result],
        tools=[WEATHER, TIME],
        tool_choice="none",
        **options,
    )
    assert second.choices[0].message.tool_calls is None
    assert second.choices[0].message.content
