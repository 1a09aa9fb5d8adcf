"""Stored completions: GET one, list the caller's own, DELETE. Others' ids answer 404."""

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from shard.api.auth import keyed
from shard.api.errors import KEYED, APIError, error_responses
from shard.api.oracle_state import OracleState, get_oracle
from shard.store.api_keys import KeyRecord

router = APIRouter()
Caller = Annotated[KeyRecord, Depends(keyed("system"))]
Oracle = Annotated[OracleState, Depends(get_oracle)]


def _not_found(completion_id: str) -> APIError:
    return APIError(
        404,
        f"No chat completion found with id '{completion_id}'.",
        code="not_found",
        param="completion_id",
    )


@router.get("/chat/completions", responses=error_responses(400, *KEYED))
async def list_completions(
    caller: Caller,
    oracle: Oracle,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
    order: Literal["asc", "desc"] = "asc",
) -> dict[str, Any]:
    """The caller's own completions, OpenAI's list shape with cursor pagination."""
    items, has_more = await asyncio.to_thread(
        oracle.completions.list, caller.id, limit, after, order
    )
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


@router.get("/chat/completions/{completion_id}", responses=error_responses(404, *KEYED))
async def get_completion(completion_id: str, caller: Caller, oracle: Oracle) -> dict[str, Any]:
    owner = None if caller.is_admin else caller.id
    body = await asyncio.to_thread(oracle.completions.get, completion_id, owner)
    if body is None:
        raise _not_found(completion_id)
    return body


@router.delete("/chat/completions/{completion_id}", responses=error_responses(404, *KEYED))
async def delete_completion(completion_id: str, caller: Caller, oracle: Oracle) -> dict[str, Any]:
    owner = None if caller.is_admin else caller.id
    if not await asyncio.to_thread(oracle.completions.delete, completion_id, owner):
        raise _not_found(completion_id)
    return {"object": "chat.completion.deleted", "id": completion_id, "deleted": True}
