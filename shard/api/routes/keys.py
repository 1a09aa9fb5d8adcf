"""Admin endpoints for API keys: POST, GET and DELETE /keys. The key is shown only at creation."""

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from shard.api.auth import keyed
from shard.api.errors import ADMIN, APIError, error_responses
from shard.api.oracle_state import OracleState, get_oracle
from shard.api.unicode_bodies import UnicodeCheckedRoute
from shard.store.api_keys import KeyRecord, LastAdminKeyError

router = APIRouter(route_class=UnicodeCheckedRoute)
Admin = Annotated[KeyRecord, Depends(keyed("system", admin=True))]
Oracle = Annotated[OracleState, Depends(get_oracle)]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(default="", max_length=200)
    role: Literal["admin", "user"] = "user"


def key_view(record: KeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "object": "api_key",
        "name": record.name,
        "role": record.role,
        "hint": record.hint,
        "created_at": int(record.created_at.timestamp()),
        "revoked": record.revoked_at is not None,
    }


@router.post("/keys", status_code=201, responses=error_responses(400, *ADMIN))
async def create_key(_: Admin, oracle: Oracle, body: KeyCreate | None = None) -> JSONResponse:
    """Every field has a default, so no body at all makes an unnamed user key."""
    body = body or KeyCreate()
    key, record = await asyncio.to_thread(oracle.keys.create, body.name, body.role)
    return JSONResponse({**key_view(record), "key": key}, status_code=201)


@router.get("/keys", responses=error_responses(*ADMIN))
async def list_keys(_: Admin, oracle: Oracle) -> dict[str, Any]:
    records = await asyncio.to_thread(oracle.keys.list)
    return {"object": "list", "data": [key_view(r) for r in records]}


@router.delete("/keys/{key_id}", responses=error_responses(404, 409, *ADMIN))
async def revoke_key(key_id: str, _: Admin, oracle: Oracle) -> dict[str, Any]:
    try:
        record = await asyncio.to_thread(oracle.keys.revoke_unless_last_admin, key_id)
    except LastAdminKeyError:
        message = (
            "This is the last live admin key: make another admin key before revoking it "
            "(`shard keys create --admin` on the oracle's machine also makes one)."
        )
        raise APIError(409, message, code="last_admin_key", param="key_id") from None
    if record is None:
        raise APIError(404, f"No API key with id '{key_id}'.", code="not_found", param="key_id")
    return key_view(record)
