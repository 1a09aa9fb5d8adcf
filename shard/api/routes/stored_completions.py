"""OpenAI's stored completions API: list the caller's own (by model and metadata), get one,
its messages, update its metadata, delete it. Others' ids answer 404 (an admin sees all)."""

import asyncio
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from shard.api.auth import keyed
from shard.api.errors import KEYED, APIError, error_responses
from shard.api.oracle_state import OracleState, get_oracle
from shard.api.protocol import CompletionUpdate
from shard.api.unicode_bodies import UnicodeCheckedRoute
from shard.store.api_keys import KeyRecord
from shard.store.completions import ListFilter, UnknownCursorError

router = APIRouter(route_class=UnicodeCheckedRoute)
Caller = Annotated[KeyRecord, Depends(keyed("system"))]
Oracle = Annotated[OracleState, Depends(get_oracle)]


def _not_found(completion_id: str) -> APIError:
    return APIError(
        404,
        f"No chat completion found with id '{completion_id}'.",
        code="not_found",
        param="completion_id",
    )


Limit = Annotated[int, Query(ge=1, le=100)]
Order = Literal["asc", "desc"]


def _listing(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's cursor-paginated list shape."""
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


_UNQUOTABLE = re.compile(r'["\\\x00-\x1f\x7f]')


def _metadata_filter(http_request: Request) -> dict[str, str]:
    """`metadata[key]=value` query parameters, as the OpenAI SDKs send them."""
    found = {}
    for name, value in http_request.query_params.multi_items():
        if name.startswith("metadata[") and name.endswith("]"):
            key = name[len("metadata[") : -1]
            if _UNQUOTABLE.search(key):  # they cannot be written in a JSON path
                message = "Metadata filter keys cannot hold '\"', '\\' or control characters."
                raise APIError(400, message, param="metadata")
            found[key] = value
        elif name == "metadata":
            raise APIError(400, "Filter metadata as metadata[key]=value.", param="metadata")
    return found


@router.get("/chat/completions", responses=error_responses(400, *KEYED))
async def list_completions(
    http_request: Request,
    caller: Caller,
    oracle: Oracle,
    limit: Limit = 20,
    after: str | None = None,
    order: Order = "asc",
    model: str | None = None,
) -> dict[str, Any]:
    """The caller's own chat completions, filtered by model and by every metadata pair given."""
    where = ListFilter(model, _metadata_filter(http_request))
    try:
        items, has_more = await asyncio.to_thread(
            oracle.completions.list, caller.id, limit, after, order, where
        )
    except UnknownCursorError:
        raise _unknown_cursor(after, "stored chat completion") from None
    return _listing(items, has_more)


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


@router.post("/chat/completions/{completion_id}", responses=error_responses(400, 404, *KEYED))
async def update_completion(
    completion_id: str, body: CompletionUpdate, caller: Caller, oracle: Oracle
) -> dict[str, Any]:
    """Replace a stored completion's metadata (the only thing that can change)."""
    owner = None if caller.is_admin else caller.id
    updated = await asyncio.to_thread(
        oracle.completions.relabel, completion_id, owner, body.metadata or {}
    )
    if updated is None:
        raise _not_found(completion_id)
    return updated


@router.get(
    "/chat/completions/{completion_id}/messages", responses=error_responses(400, 404, *KEYED)
)
async def list_messages(
    completion_id: str,
    caller: Caller,
    oracle: Oracle,
    limit: Limit = 20,
    after: str | None = None,
    order: Order = "asc",
) -> dict[str, Any]:
    """The messages the request sent, each with an id, paginated like every OpenAI list."""
    owner = None if caller.is_admin else caller.id
    try:
        page = await asyncio.to_thread(
            oracle.completions.messages, completion_id, owner, limit, after, order
        )
    except UnknownCursorError:
        raise _unknown_cursor(after, "message of this completion") from None
    if page is None:
        raise _not_found(completion_id)
    return _listing(*page)


def _unknown_cursor(after: str | None, what: str) -> APIError:
    message = f"'after' names no {what}: '{after}' (a typo, or deleted since)."
    return APIError(400, message, param="after")
