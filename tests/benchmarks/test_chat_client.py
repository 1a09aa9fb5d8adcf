"""The streaming client takes tokens from the server's usage when it sends one, else counts
content chunks, and times the first and last content; it sends a prompt or a whole history
with the sampling fields it is given (greedy by default)."""

import asyncio
import json
from typing import Any

import httpx
import pytest

from benchmarks.chat_client import ChatClient


def _sse(*events: dict[str, Any]) -> bytes:
    lines = [f"data: {json.dumps(event)}\n\n" for event in events]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def _delta(content: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": content}}]}


ROLE = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
FINISH = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}


def _complete(
    body: bytes,
    status: int = 200,
    prompt: str | list[dict[str, str]] = "hi",
    sampling: dict[str, float | int] | None = None,
) -> Any:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(status, content=body)

    async def go() -> Any:
        client = ChatClient("http://test", "k", "m", transport=httpx.MockTransport(handler))
        try:
            return await client.complete(prompt, 8, sampling)
        finally:
            await client.aclose()

    return asyncio.run(go()), seen


def test_usage_wins_over_chunk_count() -> None:
    usage = {"choices": [], "usage": {"completion_tokens": 5, "prompt_tokens": 3}}
    result, seen = _complete(_sse(ROLE, _delta("Hel"), _delta("lo there"), FINISH, usage))
    assert result.text == "Hello there"
    assert result.completion_tokens == 5 and result.tokens_from_usage
    assert seen[0]["stream"] is True and seen[0]["temperature"] == 0
    assert seen[0]["stream_options"] == {"include_usage": True}
    assert result.first_token_s is not None and result.last_token_s is not None
    assert 0 < result.first_token_s <= result.last_token_s <= result.latency_s


def test_without_usage_chunks_are_counted() -> None:
    result, _ = _complete(_sse(ROLE, _delta("a"), _delta("b"), _delta("c"), FINISH))
    assert result.completion_tokens == 3 and not result.tokens_from_usage


def test_no_content_means_no_first_token() -> None:
    result, _ = _complete(_sse(ROLE, FINISH))
    assert result.text == "" and result.first_token_s is None
    assert result.decode_tokens_per_s is None


def test_errors_are_raised() -> None:
    with pytest.raises(RuntimeError, match="HTTP 503"):
        _complete(b'{"error": {"message": "busy"}}', status=503)
    with pytest.raises(RuntimeError, match="error in stream"):
        _complete(_sse({"error": {"message": "boom"}}))


def test_a_stream_cut_short_is_an_error() -> None:
    """llama-cpp-python's server ends an interrupted stream with [DONE] and no finish_reason."""
    with pytest.raises(RuntimeError, match="without a finish_reason"):
        _complete(_sse(ROLE, _delta("a")))


def test_a_history_and_sampling_fields_are_sent_and_prompt_usage_is_read() -> None:
    history = [
        {"role": "user", "content": "Tell me a story."},
        {"role": "assistant", "content": "Once."},
        {"role": "user", "content": "Tell me more."},
    ]
    usage = {
        "choices": [],
        "usage": {
            "completion_tokens": 1,
            "prompt_tokens": 42,
            "prompt_tokens_details": {"cached_tokens": 30},
        },
    }
    sampling = {"temperature": 0.7, "top_p": 0.9, "seed": 12}
    result, seen = _complete(_sse(_delta("x"), FINISH, usage), prompt=history, sampling=sampling)
    assert seen[0]["messages"] == history
    assert (seen[0]["temperature"], seen[0]["top_p"], seen[0]["seed"]) == (0.7, 0.9, 12)
    assert (result.prompt_tokens, result.cached_tokens) == (42, 30)


def test_usage_without_details_has_no_cached_tokens() -> None:
    usage = {"choices": [], "usage": {"completion_tokens": 1, "prompt_tokens": 7}}
    result, seen = _complete(_sse(_delta("x"), FINISH, usage))
    assert seen[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert (result.prompt_tokens, result.cached_tokens) == (7, None)
