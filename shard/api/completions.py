"""Between the wire and the engine: protocol request to GenerationRequest, deltas to responses."""

import secrets
import time
import uuid
from collections.abc import AsyncIterator

from shard.api.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    TokenLogprobOut,
    TopLogprob,
    Usage,
)
from shard.engine.scheduler import Generation
from shard.engine.types import ChatMessage, FinishReason, GenerationRequest, SamplingParams
from shard.engine.types import TokenLogprob as EngineTokenLogprob

DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 500


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def to_generation_request(body: ChatCompletionRequest, request_id: str) -> GenerationRequest:
    """Fill the spec's defaults; without a user seed, draw a secret one (never sent back)."""
    sampling = SamplingParams(
        seed=body.seed if body.seed is not None else secrets.randbits(63),
        temperature=body.temperature if body.temperature is not None else DEFAULT_TEMPERATURE,
        top_p=body.top_p if body.top_p is not None else 1.0,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        logit_bias={int(k): v for k, v in (body.logit_bias or {}).items()},
        logprobs=bool(body.logprobs),
        top_logprobs=body.top_logprobs or 0,
    )
    messages = tuple(ChatMessage(m.role, m.text()) for m in body.messages)
    limit = body.completion_limit()
    return GenerationRequest(
        request_id=request_id,
        messages=messages,
        sampling=sampling,
        max_tokens=limit if limit is not None else DEFAULT_MAX_TOKENS,
        shrink_to_fit=limit is None,
        stop=body.stop_sequences(),
        n=body.n or 1,
    )


def _logprobs_out(items: list[EngineTokenLogprob]) -> ChoiceLogprobs:
    return ChoiceLogprobs(
        content=[
            TokenLogprobOut(
                token=item.token.decode(errors="replace"),
                logprob=item.logprob,
                bytes=list(item.token),
                top_logprobs=[
                    TopLogprob(token=t.decode(errors="replace"), logprob=lp, bytes=list(t))
                    for t, lp in item.top
                ],
            )
            for item in items
        ]
    )


async def collect_completion(
    generation: Generation, completion_id: str, model: str
) -> ChatCompletion:
    """Run a generation to the end and build the non-streaming response."""
    n = generation.request.n
    texts = [""] * n
    logprobs: list[list[EngineTokenLogprob]] = [[] for _ in range(n)]
    tokens = [0] * n
    finish: list[FinishReason] = ["length"] * n
    async for delta in generation.deltas():
        texts[delta.index] += delta.text
        logprobs[delta.index].extend(delta.logprobs)
        tokens[delta.index] = delta.completion_tokens
        if delta.finish_reason is not None:
            finish[delta.index] = delta.finish_reason
    want_logprobs = generation.request.sampling.logprobs
    choices = [
        Choice(
            index=i,
            message=AssistantMessage(content=texts[i]),
            logprobs=_logprobs_out(logprobs[i]) if want_logprobs else None,
            finish_reason=finish[i],
        )
        for i in range(n)
    ]
    return ChatCompletion(
        id=completion_id,
        created=int(time.time()),
        model=model,
        choices=choices,
        usage=_usage(generation.prompt_tokens, sum(tokens)),
    )


def _usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
    )


async def stream_chunks(
    generation: Generation, completion_id: str, model: str, include_usage: bool
) -> AsyncIterator[ChatCompletionChunk]:
    """OpenAI's chunk sequence: a role chunk per choice, content, finish, then maybe usage."""
    created = int(time.time())

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=completion_id, created=created, model=model, choices=choices, usage=usage
        )

    n = generation.request.n
    want_logprobs = generation.request.sampling.logprobs
    for index in range(n):
        yield chunk([ChunkChoice(index=index, delta=Delta(role="assistant", content=""))])
    tokens = [0] * n
    async for delta in generation.deltas():
        tokens[delta.index] = delta.completion_tokens
        if delta.text or delta.logprobs:
            yield chunk(
                [
                    ChunkChoice(
                        index=delta.index,
                        delta=Delta(content=delta.text),
                        logprobs=_logprobs_out(list(delta.logprobs)) if want_logprobs else None,
                    )
                ]
            )
        if delta.finish_reason is not None:
            yield chunk(
                [ChunkChoice(index=delta.index, delta=Delta(), finish_reason=delta.finish_reason)]
            )
    if include_usage:
        yield chunk([], _usage(generation.prompt_tokens, sum(tokens)))
