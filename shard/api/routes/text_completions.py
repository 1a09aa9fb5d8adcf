"""POST /completions: the legacy text API, for clients such as LlamaIndex's OpenAILike that
use it by default. The prompt is continued as it is, without a chat template."""

import uuid
from contextlib import AsyncExitStack
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from shard.api.auth import keyed
from shard.api.completions import (
    CompletionBuilder,
    stream_text_chunks,
    to_text_generation_request,
)
from shard.api.generation_flow import (
    SSE_HEADERS,
    collect_unless_disconnected,
    finish,
    server_sent_events,
    start_generation,
)
from shard.api.oracle_state import OracleState, get_oracle
from shard.api.protocol import CompletionRequest, TextCompletion
from shard.engine.scheduler import Generation
from shard.store.api_keys import KeyRecord

router = APIRouter()


def new_text_completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


async def _collect(builder: CompletionBuilder, generation: Generation) -> TextCompletion:
    async for delta in generation.deltas():
        builder.add(delta)
    return builder.text_result()


@router.post("/completions", response_model=None)
async def create_completion(
    body: CompletionRequest,
    http_request: Request,
    caller: Annotated[KeyRecord, Depends(keyed("chat"))],
    oracle: Annotated[OracleState, Depends(get_oracle)],
) -> TextCompletion | StreamingResponse:
    model = oracle.resolve_model(body.model)
    completion_id = new_text_completion_id()
    exits = AsyncExitStack()
    request = to_text_generation_request(body, completion_id)
    generation = await start_generation(oracle, request, exits)
    builder = CompletionBuilder(generation, completion_id, model)
    if not body.stream:
        work = _collect(builder, generation)
        result = await collect_unless_disconnected(oracle, http_request, exits, work)
        await finish(oracle, caller, generation, result)
        return result
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks = stream_text_chunks(builder, generation, include_usage)
    events = server_sent_events(oracle, caller, exits, generation, chunks, builder.text_result)
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
