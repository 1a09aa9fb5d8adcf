"""The parts of a generating route that chat and legacy completions share: admission with
OpenAI errors, giving up when the client leaves, server-sent events, storing and counting."""

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from shard.api.completions import CompletionBuilder
from shard.api.errors import APIError, error_body
from shard.api.oracle_state import OracleState
from shard.api.protocol import Usage
from shard.engine.client import (
    EngineNotReadyError,
    Generation,
    QueueFullError,
    RequestRejectedError,
)
from shard.engine.types import GenerationRequest
from shard.store.api_keys import KeyRecord
from shard.store.completions import NewCompletion

Result = TypeVar("Result")


class StoredResult(Protocol):
    """A chat or legacy completion object, as the client received it."""

    @property
    def id(self) -> str: ...

    @property
    def usage(self) -> Usage | None: ...

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


StoredT = TypeVar("StoredT", bound=StoredResult)


async def start_generation(
    oracle: OracleState, request: GenerationRequest, exits: AsyncExitStack
) -> Generation:
    """Admit the request, mapping the engine's refusals to OpenAI errors before any byte."""
    engine = oracle.ready_engine()
    try:
        return await exits.enter_async_context(engine.generate(request))
    except QueueFullError as error:
        oracle.metrics.failed("busy")
        raise APIError(
            503,
            f"The server is at capacity ({error}); retry shortly.",
            headers={"Retry-After": "1"},
        ) from error
    except EngineNotReadyError as error:
        oracle.metrics.failed("busy")
        raise APIError(503, str(error), headers={"Retry-After": "5"}) from error
    except RequestRejectedError as error:
        oracle.metrics.failed("rejected")
        raise rejection_error(error) from error


def rejection_error(error: RequestRejectedError) -> APIError:
    rejection = error.rejection
    status = {"internal_error": 500, "service_unavailable": 503}.get(rejection.code, 400)
    return APIError(status, rejection.message, code=rejection.code, param=rejection.param)


async def collect_unless_disconnected(
    oracle: OracleState,
    http_request: Request,
    exits: AsyncExitStack,
    work: Coroutine[Any, Any, Result],
) -> Result:
    """Await `work`, but give up (cancelling the generation) if the client goes away."""
    async with exits:
        task = asyncio.ensure_future(work)
        watcher = asyncio.ensure_future(_wait_for_disconnect(http_request))
        try:
            done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                return task.result()
            task.cancel()
            oracle.metrics.failed("cancelled")
            raise APIError(499, "client closed request")
        except RequestRejectedError as error:
            oracle.metrics.failed("error")
            raise rejection_error(error) from error
        finally:
            watcher.cancel()


async def _wait_for_disconnect(http_request: Request) -> None:
    while (await http_request.receive())["type"] != "http.disconnect":
        pass


@dataclass(frozen=True)
class Storing:
    """What is stored beside the completion itself; `respond` takes None for `store: false`."""

    metadata: dict[str, str] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)


async def finish(
    oracle: OracleState,
    caller: KeyRecord,
    generations: Sequence[Generation],
    result: StoredResult,
    storing: Storing | None,
) -> None:
    """Store the completion (before the response ends) unless asked not to, and count it
    once, however many generations (a legacy request's prompts) made it."""
    if storing is not None:
        kept = NewCompletion(
            result.id,
            caller.id,
            result.model_dump(mode="json"),
            storing.metadata,
            storing.messages,
        )
        await asyncio.to_thread(oracle.completions.save, kept)
    metrics = oracle.metrics
    admitted_at = min(generation.admitted_at for generation in generations)
    first_tokens = [g.first_token_at for g in generations if g.first_token_at is not None]
    if first_tokens:
        metrics.first_token.observe(min(first_tokens) - admitted_at)
    usage = result.usage or Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0)
    metrics.finished(time.monotonic() - admitted_at, usage.prompt_tokens, usage.completion_tokens)


async def server_sent_events(
    oracle: OracleState,
    caller: KeyRecord,
    exits: AsyncExitStack,
    generations: Sequence[Generation],
    chunks: AsyncIterator[BaseModel],
    final: Callable[[], StoredResult],
    storing: Storing | None,
) -> AsyncIterator[str]:
    """`data: {chunk}` lines, the stored result, then `data: [DONE]`; leaving early (the client
    is gone) cancels the generation."""
    async with exits:
        try:
            async for chunk in chunks:
                yield f"data: {chunk.model_dump_json()}\n\n"
        except RequestRejectedError as error:
            oracle.metrics.failed("error")
            api_error = rejection_error(error)
            body = error_body(api_error.status, api_error.message, api_error.code, None)
            yield f"data: {json.dumps(body)}\n\n"
            yield "data: [DONE]\n\n"
            return
        except asyncio.CancelledError:
            oracle.metrics.failed("cancelled")
            raise
    await finish(oracle, caller, generations, final(), storing)
    yield "data: [DONE]\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def respond(
    oracle: OracleState,
    caller: KeyRecord,
    http_request: Request,
    request: GenerationRequest,
    model: str,
    stream: bool,
    result_of: Callable[[CompletionBuilder], StoredT],
    chunks_of: Callable[[CompletionBuilder, Generation], AsyncIterator[BaseModel]],
    storing: Storing | None,
    tool_calls: bool = False,
) -> StoredT | StreamingResponse:
    """Run one generation and answer with the whole object (stored first) or an SSE stream.

    `result_of` builds the final object from the accumulated deltas (chat or legacy shape);
    `chunks_of` yields the streamed chunks while feeding the same builder.
    """
    exits = AsyncExitStack()
    request = dataclasses.replace(request, owner=caller.id)
    generation = await start_generation(oracle, request, exits)
    builder = CompletionBuilder(generation, request.request_id, model, tool_calls)
    if not stream:

        async def collect() -> StoredT:
            async for delta in generation.deltas():
                builder.add(delta)
            return result_of(builder)

        result = await collect_unless_disconnected(oracle, http_request, exits, collect())
        await finish(oracle, caller, [generation], result, storing)
        return result
    events = server_sent_events(
        oracle,
        caller,
        exits,
        [generation],
        chunks_of(builder, generation),
        lambda: result_of(builder),
        storing,
    )
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
