"""POST /chat/completions, plain and streamed; the result is stored before the response ends."""

from contextlib import AsyncExitStack
from typing import Annotated

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
from shard.api.generation_flow import (
    SSE_HEADERS,
    collect_unless_disconnected,
    finish,
    server_sent_events,
    start_generation,
)
from shard.api.oracle_state import OracleState, get_oracle
from shard.api.protocol import ChatCompletion, ChatCompletionRequest
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
    completion_id = new_completion_id()
    exits = AsyncExitStack()
    request = to_generation_request(body, completion_id)
    generation = await start_generation(oracle, request, exits)
    builder = CompletionBuilder(generation, completion_id, model)
    if not body.stream:
        work = collect_completion(builder, generation)
        result = await collect_unless_disconnected(oracle, http_request, exits, work)
        await finish(oracle, caller, generation, result)
        return result
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks = stream_chunks(builder, generation, include_usage)
    events = server_sent_events(oracle, caller, exits, generation, chunks, builder.result)
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
