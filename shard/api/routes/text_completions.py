"""POST /completions: the legacy text API, for clients such as LlamaIndex's OpenAILike that
use it by default. Each prompt (one, or a list) is continued as it is, without a chat
template."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from shard.api.auth import keyed
from shard.api.completions import to_text_generation_requests
from shard.api.errors import KEYED, error_responses
from shard.api.generation_flow import Storing
from shard.api.oracle_state import OracleState, get_oracle
from shard.api.prompt_lists import respond_to_prompts
from shard.api.protocol import CompletionRequest, TextCompletion
from shard.api.text_choices import TextShape
from shard.api.unicode_bodies import UnicodeCheckedRoute
from shard.store.api_keys import KeyRecord

router = APIRouter(route_class=UnicodeCheckedRoute)


@router.post("/completions", response_model=None, responses=error_responses(400, 404, 503, *KEYED))
async def create_completion(
    body: CompletionRequest,
    http_request: Request,
    caller: Annotated[KeyRecord, Depends(keyed("chat"))],
    oracle: Annotated[OracleState, Depends(get_oracle)],
) -> TextCompletion | StreamingResponse:
    model = oracle.resolve_model(body.model)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    return await respond_to_prompts(
        oracle,
        caller,
        http_request,
        to_text_generation_requests(body, completion_id),
        completion_id,
        model,
        bool(body.stream),
        include_usage,
        Storing(),  # kept, retrievable by id, though never listed with chat completions
        TextShape(echo=bool(body.echo), logprobs=body.logprobs is not None),
    )
