"""A legacy completion may carry a list of prompts (LangChain's `OpenAI.batch()` and
`generate()` send one). Each prompt is its own generation, run side by side; the answer is
one `text_completion` whose choices are indexed prompt by prompt, `n` each, as OpenAI does,
with the usage summed."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from fastapi import Request
from fastapi.responses import StreamingResponse

from shard.api.completions import CompletionBuilder
from shard.api.generation_flow import (
    SSE_HEADERS,
    Storing,
    collect_unless_disconnected,
    finish,
    server_sent_events,
    start_generation,
)
from shard.api.oracle_state import OracleState
from shard.api.protocol import PromptTokensDetails, TextChoice, TextCompletion, Usage
from shard.api.text_choices import TextChoices, TextShape
from shard.engine.client import Generation
from shard.engine.types import ChoiceDelta, GenerationRequest
from shard.store.api_keys import KeyRecord


async def respond_to_prompts(
    oracle: OracleState,
    caller: KeyRecord,
    http_request: Request,
    requests: list[GenerationRequest],
    completion_id: str,
    model: str,
    stream: bool,
    include_usage: bool,
    storing: Storing | None,
    shape: TextShape,
) -> TextCompletion | StreamingResponse:
    """Admit every prompt or none, then answer with the whole object or an SSE stream."""
    exits = AsyncExitStack()
    owned = [dataclasses.replace(request, owner=caller.id) for request in requests]
    generations = await _start_all(oracle, owned, exits)
    builders = [CompletionBuilder(g, completion_id, model) for g in generations]
    if not stream:

        async def collect() -> TextCompletion:
            async for number, delta in _interleaved(generations):
                builders[number].add(delta)
            return merged(builders, shape)

        result = await collect_unless_disconnected(oracle, http_request, exits, collect())
        await finish(oracle, caller, generations, result, storing)
        return result
    chunks = _stream_chunks(builders, generations, include_usage, shape)
    events = server_sent_events(
        oracle, caller, exits, generations, chunks, lambda: merged(builders, shape), storing
    )
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


async def _start_all(
    oracle: OracleState, requests: list[GenerationRequest], exits: AsyncExitStack
) -> list[Generation]:
    """Admit the prompts together (not one engine step each); if any is refused, those
    admitted are cancelled and the first refusal is the answer (so too if this is cancelled:
    the generations already admitted must not run on unread)."""
    try:
        outcomes = await asyncio.gather(
            *(start_generation(oracle, request, exits) for request in requests),
            return_exceptions=True,
        )
    except BaseException:
        await exits.aclose()
        raise
    refusals = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if refusals:
        await exits.aclose()
        raise refusals[0]
    return [outcome for outcome in outcomes if isinstance(outcome, Generation)]


async def _interleaved(
    generations: list[Generation],
) -> AsyncIterator[tuple[int, ChoiceDelta]]:
    """Every generation's deltas as they come, each with its prompt's number; a refusal in
    any of them ends the whole (the handler turns it into an error)."""
    if len(generations) == 1:  # the usual case needs no tasks
        async for delta in generations[0].deltas():
            yield 0, delta
        return
    events: asyncio.Queue[tuple[int, ChoiceDelta] | Exception | None] = asyncio.Queue()

    async def pump(number: int, generation: Generation) -> None:
        try:
            async for delta in generation.deltas():
                events.put_nowait((number, delta))
        except Exception as error:  # a refusal mid-way, as RequestRejectedError
            events.put_nowait(error)
        finally:
            events.put_nowait(None)

    pumps = [asyncio.create_task(pump(n, g)) for n, g in enumerate(generations)]
    try:
        running = len(pumps)
        while running:
            event = await events.get()
            if event is None:
                running -= 1
            elif isinstance(event, Exception):
                raise event
            else:
                yield event
    finally:
        for task in pumps:
            task.cancel()


def merged(builders: list[CompletionBuilder], shape: TextShape) -> TextCompletion:
    """One object from each prompt's: choices renumbered prompt by prompt, usage summed."""
    parts = [builder.text_result(shape) for builder in builders]
    choices = [
        choice.model_copy(update={"index": number * len(part.choices) + choice.index})
        for number, part in enumerate(parts)
        for choice in part.choices
    ]
    return parts[0].model_copy(update={"choices": choices, "usage": _summed(parts)})


def _summed(parts: list[TextCompletion]) -> Usage:
    usages = [part.usage for part in parts if part.usage is not None]
    prompt = sum(usage.prompt_tokens for usage in usages)
    completion = sum(usage.completion_tokens for usage in usages)
    cached = sum(
        usage.prompt_tokens_details.cached_tokens
        for usage in usages
        if usage.prompt_tokens_details is not None
    )
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )


async def _stream_chunks(
    builders: list[CompletionBuilder],
    generations: list[Generation],
    include_usage: bool,
    shape: TextShape,
) -> AsyncIterator[TextCompletion]:
    """`text_completion` chunks with text deltas as any prompt makes them, then maybe usage."""
    first = builders[0].text_result()
    n = generations[0].request.n
    texts = [TextChoices(generation, shape) for generation in generations]

    def chunk(choices: list[TextChoice], usage: Usage | None = None) -> TextCompletion:
        return TextCompletion(
            id=first.id, created=first.created, model=first.model, choices=choices, usage=usage
        )

    async for number, delta in _interleaved(generations):
        builders[number].add(delta)
        choice = texts[number].chunk(delta, number * n + delta.index)
        if choice is not None:
            yield chunk([choice])
    if include_usage:
        yield chunk([], merged(builders, shape).usage)
