"""POST /chat/completions, plain and streamed; the result is stored before the response ends."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from shard.api.auth import keyed
from shard.api.completions import (
    CompletionBuilder,
    collect_completion,
    new_completion_id,
    stream_chunks,
    to_generation_request,
)
from shard.api.errors import APIError, error_body
from shard.api.oracle_state import OracleState, get_oracle
from shard.api.protocol import ChatCompletion, ChatCompletionRequest
from shard.engine.scheduler import (
    EngineNotReadyError,
    Generation,
    QueueFullError,
    RequestRejectedError,
    Scheduler,
)
from shard.engine.types import GenerationRequest
from shard.store.api_keys import KeyRecord

router = APIRouter()


@router.post("/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest,
    http_request: Request,
    caller: Annotated[KeyRecord, Depends(keyed("chat"))],
    oracle: Annotated[OracleState, Depends(get_oracle)],
) -> ChatCompletion | StreamingResponse:
    model = oracle.resolve_model(body.model)
    scheduler = oracle.ready_scheduler()
    completion_id = new_completion_id()
    exits = AsyncExitStack()
    try:
        generation = await _start(scheduler, to_generation_request(body, completion_id), exits)
    except APIError as error:
        oracle.metrics.failed("busy" if error.status == 503 else "rejected")
        raise
    builder = CompletionBuilder(generation, completion_id, model)
    if not body.stream:
        try:
            async with exits:
                result = await _unless_disconnected(
                    http_request, collect_completion(builder, generation)
                )
        except APIError as error:
            oracle.metrics.failed("cancelled" if error.status == 499 else "error")
            raise
        await _finish(oracle, caller, generation, result)
        return result
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(
        _sse(exits, builder, generation, include_usage, oracle, caller),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _start(
    scheduler: Scheduler, request: GenerationRequest, exits: AsyncExitStack
) -> Generation:
    """Admit the request, mapping the engine's refusals to OpenAI errors before any byte."""
    try:
        return await exits.enter_async_context(scheduler.generate(request))
    except QueueFullError as error:
        raise APIError(
            503,
            f"The server is at capacity ({error}); retry shortly.",
            headers={"Retry-After": "1"},
        ) from error
    except EngineNotReadyError as error:
        raise APIError(503, str(error), headers={"Retry-After": "5"}) from error
    except RequestRejectedError as error:
        raise _rejection_error(error) from error


def _rejection_error(error: RequestRejectedError) -> APIError:
    rejection = error.rejection
    status = 500 if rejection.code == "internal_error" else 400
    return APIError(status, rejection.message, code=rejection.code, param=rejection.param)


async def _finish(
    oracle: OracleState, caller: KeyRecord, generation: Generation, result: ChatCompletion
) -> None:
    """Store the completion (before the response ends) and count it."""
    await asyncio.to_thread(
        oracle.completions.save, result.id, caller.id, result.model_dump(mode="json")
    )
    metrics = oracle.metrics
    now = time.monotonic()
    if generation.first_token_at is not None:
        metrics.first_token.observe(generation.first_token_at - generation.admitted_at)
    metrics.finished(
        now - generation.admitted_at, result.usage.prompt_tokens, result.usage.completion_tokens
    )


async def _unless_disconnected(
    http_request: Request, work: Coroutine[Any, Any, ChatCompletion]
) -> ChatCompletion:
    """Await `work`, but give up (cancelling the generation) if the client goes away."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(http_request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        raise APIError(499, "client closed request")
    except RequestRejectedError as error:
        raise _rejection_error(error) from error
    finally:
        watcher.cancel()


async def _wait_for_disconnect(http_request: Request) -> None:
    while (await http_request.receive())["type"] != "http.disconnect":
        pass


async def _sse(
    exits: AsyncExitStack,
    builder: CompletionBuilder,
    generation: Generation,
    include_usage: bool,
    oracle: OracleState,
    caller: KeyRecord,
) -> AsyncIterator[str]:
    """Server-sent events; leaving early (client gone) cancels the generation."""
    async with exits:
        try:
            async for chunk in stream_chunks(builder, generation, include_usage):
                yield f"data: {chunk.model_dump_json()}\n\n"
        except RequestRejectedError as error:
            oracle.metrics.failed("error")
            api_error = _rejection_error(error)
            body = error_body(api_error.status, api_error.message, api_error.code, None)
            yield f"data: {json.dumps(body)}\n\n"
            yield "data: [DONE]\n\n"
            return
        except asyncio.CancelledError:
            oracle.metrics.failed("cancelled")
            raise
    await _finish(oracle, caller, generation, builder.result())
    yield "data: [DONE]\n\n"
