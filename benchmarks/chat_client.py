"""Streaming chat completions, timed from the client's side.

Every measured request streams (`stream: true`), as chat front ends do, so one request gives
its time to first token, its decode rate and its latency. Raw httpx keeps client overhead out
of the timing: the benchmark shares two cores with the server under test.
"""

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

GREEDY_FIELDS: Mapping[str, object] = {"temperature": 0}


@dataclass(frozen=True)
class StreamedCompletion:
    """One finished streaming request, as the client saw it."""

    text: str
    completion_tokens: int
    tokens_from_usage: bool  # False: counted as content chunks (the server sent no usage)
    latency_s: float  # request sent to stream closed
    first_token_s: float | None  # request sent to the first non-empty content chunk
    last_token_s: float | None  # request sent to the last non-empty content chunk
    prompt_tokens: int | None = None  # the streamed usage's, when the server sent one
    cached_tokens: int | None = None  # usage.prompt_tokens_details.cached_tokens, if sent

    @property
    def decode_tokens_per_s(self) -> float | None:
        """Tokens after the first over the time between first and last content: the decode
        rate without queueing and prompt processing."""
        if self.first_token_s is None or self.last_token_s is None or self.completion_tokens < 2:
            return None
        span = self.last_token_s - self.first_token_s
        return (self.completion_tokens - 1) / span if span > 0 else None


def _event(line: str) -> dict[str, Any] | None:
    """The JSON payload of one SSE `data:` line; None for anything else and for [DONE]."""
    if not line.startswith("data:"):
        return None
    payload = line[len("data:") :].strip()
    if not payload or payload == "[DONE]":
        return None
    event: dict[str, Any] = json.loads(payload)
    return event


class ChatClient:
    """Streaming chat completions against one OpenAI-compatible server."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        transport: httpx.AsyncBaseTransport | None = None,  # tests pass a mock
    ) -> None:
        self.model = model
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(900.0, connect=10.0),
            # llama-server drops idle keep-alive connections after 5 s; reusing one fails
            limits=httpx.Limits(
                max_connections=256, max_keepalive_connections=256, keepalive_expiry=1.0
            ),
        )

    async def complete(
        self,
        prompt: str | Sequence[Mapping[str, str]],
        max_tokens: int,
        sampling: Mapping[str, object] | None = None,
    ) -> StreamedCompletion:
        """One completion of a prompt (one user message) or of a whole chat history, with the
        given sampling fields (default greedy: `temperature` 0). Tokens are the server's
        streamed `usage` when it sends one (Shard, llama-server), else the number of content
        chunks (llama-cpp-python's server streams one token per chunk and ignores
        `stream_options`)."""
        messages = (
            [{"role": "user", "content": prompt}]
            if isinstance(prompt, str)
            else [dict(message) for message in prompt]
        )
        body = {
            "model": self.model,
            "messages": messages,
            **(GREEDY_FIELDS if sampling is None else sampling),
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for attempt in (1, 2):
            try:
                return await self._complete_once(body)
            except httpx.RemoteProtocolError:
                # a pooled connection the server had already closed (llama-server does
                # now and then after streaming): send it again once, timed afresh
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _complete_once(self, body: dict[str, Any]) -> StreamedCompletion:
        parts: list[str] = []
        usage_tokens: int | None = None
        prompt_tokens: int | None = None
        cached_tokens: int | None = None
        finish_reason: str | None = None
        first: float | None = None
        last: float | None = None
        started = time.perf_counter()
        async with self._http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:500]}")
            async for line in response.aiter_lines():
                event = _event(line)
                if event is None:
                    continue
                if "error" in event:
                    raise RuntimeError(f"error in stream: {json.dumps(event['error'])[:500]}")
                if usage := event.get("usage"):
                    usage_tokens = int(usage["completion_tokens"])
                    prompt_tokens = usage.get("prompt_tokens")
                    cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
                for choice in event.get("choices") or []:
                    finish_reason = choice.get("finish_reason") or finish_reason
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        last = time.perf_counter() - started
                        first = last if first is None else first
                        parts.append(content)
        latency = time.perf_counter() - started
        if finish_reason is None:  # cut short (interrupted): not a whole answer to time
            raise RuntimeError(f"stream ended without a finish_reason after {len(parts)} chunks")
        return StreamedCompletion(
            text="".join(parts),
            completion_tokens=usage_tokens if usage_tokens is not None else len(parts),
            tokens_from_usage=usage_tokens is not None,
            latency_s=latency,
            first_token_s=first,
            last_token_s=last,
            prompt_tokens=None if prompt_tokens is None else int(prompt_tokens),
            cached_tokens=None if cached_tokens is None else int(cached_tokens),
        )

    async def aclose(self) -> None:
        """Close pooled connections before the server is stopped."""
        await self._http.aclose()


async def served_model_id(base_url: str, api_key: str) -> str:
    """The id the server lists first: the name each server itself expects in `model`."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as http:
        response = await http.get("/v1/models", headers={"Authorization": f"Bearer {api_key}"})
        response.raise_for_status()
        model_id: str = response.json()["data"][0]["id"]
        return model_id


async def connect(base_url: str, api_key: str) -> ChatClient:
    """A client that names the model the way this server wants it named."""
    return ChatClient(base_url, api_key, await served_model_id(base_url, api_key))
