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
    CompletionRequest,
    Delta,
    PromptTokensDetails,
    TextChoice,
    TextCompletion,
    TokenLogprobOut,
    TopLogprob,
    Usage,
    _SamplingRequest,
)
from shard.engine.client import Generation
from shard.engine.types import (
    ChatMessage,
    ChoiceDelta,
    FinishReason,
    GenerationRequest,
    OutputGrammar,
    SamplingParams,
)
from shard.engine.types import TokenLogprob as EngineTokenLogprob

DEFAULT_TEMPERATURE = 0.7
DEFAULT_MAX_TOKENS = 500
LEGACY_MAX_TOKENS = 16


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def _sampling(body: _SamplingRequest, logprobs: bool, top_logprobs: int) -> SamplingParams:
    """Fill the spec's defaults; without a user seed, draw a secret one (never sent back)."""
    return SamplingParams(
        seed=body.seed if body.seed is not None else secrets.randbits(63),
        temperature=body.temperature if body.temperature is not None else DEFAULT_TEMPERATURE,
        top_p=body.top_p if body.top_p is not None else 1.0,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        logit_bias={int(k): v for k, v in (body.logit_bias or {}).items()},
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )


def to_generation_request(body: ChatCompletionRequest, request_id: str) -> GenerationRequest:
    limit = body.completion_limit()
    return GenerationRequest(
        request_id=request_id,
        messages=tuple(ChatMessage(m.role, m.text()) for m in body.messages),
        sampling=_sampling(body, bool(body.logprobs), body.top_logprobs or 0),
        max_tokens=limit if limit is not None else DEFAULT_MAX_TOKENS,
        shrink_to_fit=limit is None,
        stop=body.stop_sequences(),
        n=body.n or 1,
        grammar=_output_grammar(body),
    )


def _output_grammar(body: ChatCompletionRequest) -> OutputGrammar | None:
    grammar = body.response_format.grammar if body.response_format else None
    return OutputGrammar(grammar, "response_format") if grammar is not None else None


def to_text_generation_request(body: CompletionRequest, request_id: str) -> GenerationRequest:
    return GenerationRequest(
        request_id=request_id,
        messages=(),
        raw_prompt=body.prompt_text(),
        sampling=_sampling(body, False, 0),
        max_tokens=body.max_tokens if body.max_tokens is not None else LEGACY_MAX_TOKENS,
        shrink_to_fit=body.max_tokens is None,
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


class CompletionBuilder:
    """Accumulates deltas into the non-streaming object (what is returned and stored)."""

    def __init__(self, generation: Generation, completion_id: str, model: str) -> None:
        n = generation.request.n
        self._generation = generation
        self._id = completion_id
        self._model = model
        self._created = int(time.time())
        self._texts = [""] * n
        self._logprobs: list[list[EngineTokenLogprob]] = [[] for _ in range(n)]
        self._tokens = [0] * n
        self._finish: list[FinishReason] = ["length"] * n

    @property
    def created(self) -> int:
        return self._created

    def add(self, delta: ChoiceDelta) -> None:
        self._texts[delta.index] += delta.text
        self._logprobs[delta.index].extend(delta.logprobs)
        self._tokens[delta.index] = delta.completion_tokens
        if delta.finish_reason is not None:
            self._finish[delta.index] = delta.finish_reason

    def text_result(self) -> TextCompletion:
        """The legacy `text_completion` object."""
        return TextCompletion(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=[
                TextChoice(index=i, text=text, finish_reason=self._finish[i])
                for i, text in enumerate(self._texts)
            ],
            usage=self.usage(),
        )

    def usage(self) -> Usage:
        prompt = self._generation.prompt_tokens
        completion = sum(self._tokens)
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=self._generation.cached_tokens),
        )

    def result(self) -> ChatCompletion:
        want_logprobs = self._generation.request.sampling.logprobs
        choices = [
            Choice(
                index=i,
                message=AssistantMessage(content=text),
                logprobs=_logprobs_out(self._logprobs[i]) if want_logprobs else None,
                finish_reason=self._finish[i],
            )
            for i, text in enumerate(self._texts)
        ]
        return ChatCompletion(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=choices,
            usage=self.usage(),
        )


async def stream_chunks(
    builder: CompletionBuilder, generation: Generation, include_usage: bool
) -> AsyncIterator[ChatCompletionChunk]:
    """OpenAI's chunk sequence: a role chunk per choice, content, finish, then maybe usage."""
    result = builder.result()

    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=result.id, created=result.created, model=result.model, choices=choices, usage=usage
        )

    want_logprobs = generation.request.sampling.logprobs
    for index in range(generation.request.n):
        yield chunk([ChunkChoice(index=index, delta=Delta(role="assistant", content=""))])
    async for delta in generation.deltas():
        builder.add(delta)
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
        yield chunk([], builder.usage())


async def stream_text_chunks(
    builder: CompletionBuilder, generation: Generation, include_usage: bool
) -> AsyncIterator[TextCompletion]:
    """Legacy streaming: `text_completion` chunks with text deltas, then maybe usage."""
    first = builder.text_result()

    def chunk(choices: list[TextChoice], usage: Usage | None = None) -> TextCompletion:
        return TextCompletion(
            id=first.id, created=first.created, model=first.model, choices=choices, usage=usage
        )

    async for delta in generation.deltas():
        builder.add(delta)
        if delta.text or delta.finish_reason:
            yield chunk(
                [TextChoice(index=delta.index, text=delta.text, finish_reason=delta.finish_reason)]
            )
    if include_usage:
        yield chunk([], builder.usage())
