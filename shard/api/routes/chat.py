"""POST /chat/completions, plain and streamed; the result is stored before the response ends."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from shard.api.auth import keyed
from shard.api.completions import (
    CompletionBuilder,
    new_completion_id,
    stream_chunks,
    to_generation_request,
)
from shard.api.errors import KEYED, error_responses
from shard.api.generation_flow import Storing, respond
from shard.api.oracle_state import OracleState, get_oracle
from shard.api.protocol import ChatCompletion, ChatCompletionRequest
from shard.api.unicode_bodies import UnicodeCheckedRoute
from shard.store.api_keys import KeyRecord

router = APIRouter(route_class=UnicodeCheckedRoute)


@router.post(
    "/chat/completions",
    response_model=None,
    responses=error_responses(400, 404, 503, *KEYED),
)
async def create_chat_completion(
    body: ChatCompletionRequest,
    http_request: Request,
    caller: Annotated[KeyRecord, Depends(keyed("chat"))],
    oracle: Annotated[OracleState, Depends(get_oracle)],
) -> ChatCompletion | StreamingResponse:
    model = oracle.resolve_model(body.model)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    engine = oracle.engine
    status = engine.status if engine is not None else None
    renders_tools = status is not None and status.template_renders_tools
    request = to_generation_request(body, new_completion_id(), renders_tools)
    return await respond(
        oracle,
        caller,
        http_request,
        request,
        model,
        bool(body.stream),
        CompletionBuilder.result,
        lambda builder, generation: stream_chunks(builder, generation, include_usage),
        storing_of(body),
        tool_calls=body.tool_mode() is not None,
    )


def storing_of(body: ChatCompletionRequest) -> Storing | None:
    """Shard stores by default (the spec retrieves completions by id); `store: false` opts
    out."""
    if body.store is False:
        return None
    return Storing(body.metadata or {}, [message.stored() for message in body.messages])
