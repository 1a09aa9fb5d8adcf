"""The swarm's endpoints: WS /scouts/connect where scouts join, their figures and logs, and
reservations, golden tickets and bans. Thin: the hub does the work, `scout_views` writes the
JSON, and the swarm's refusals become HTTP errors here (`_api_error`)."""

import asyncio
import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.websockets import WebSocketDisconnect

from shard.api import scout_views as views
from shard.api.auth import keyed
from shard.api.errors import ADMIN, KEYED, APIError, error_responses
from shard.api.oracle_state import OracleState, get_oracle
from shard.api.unicode_bodies import UnicodeCheckedRoute
from shard.store.api_keys import KeyRecord
from shard.swarm.errors import (
    NotEnoughFreeScouts,
    ReservationNotFound,
    ScoutNotFound,
    ScoutReservedElsewhere,
    SwarmError,
    TicketsNotReady,
)
from shard.swarm.hub import Hub
from shard.swarm.protocol import CLOSE_BAD_KEY, CLOSE_TRY_AGAIN, ProtocolError
from shard.swarm.registry import LogLevel, ScoutRecord, close_reason

router = APIRouter(route_class=UnicodeCheckedRoute)
Caller = Annotated[KeyRecord, Depends(keyed("scouts"))]
Admin = Annotated[KeyRecord, Depends(keyed("scouts", admin=True))]
Oracle = Annotated[OracleState, Depends(get_oracle)]


class ReserveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    scout_id: str | None = Field(default=None, max_length=64)
    count: int | None = Field(default=None, ge=1, le=64)
    reservation_duration: int = Field(default=300, ge=30, le=3600)

    @model_validator(mode="after")
    def _one_target(self) -> "ReserveRequest":
        if self.scout_id is not None and self.count not in (None, 1):
            raise ValueError("give scout_id or count, not both")
        return self


class GoldenTicketRun(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    count: int = Field(default=5, ge=1, le=50)


class ReservationRef(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reservation_id: str = Field(max_length=64)


def _hub(oracle: OracleState) -> Hub:
    if oracle.hub is None:
        raise APIError(503, "The swarm is not running yet.", headers={"Retry-After": "5"})
    return oracle.hub


def _scout(hub: Hub, scout_id: str) -> ScoutRecord:
    record = hub.scout(scout_id)
    if record is None:
        raise APIError(404, f"No scout with id '{scout_id}'.", code="not_found", param="scout_id")
    return record


@router.websocket("/scouts/connect")
async def connect(websocket: WebSocket) -> None:
    oracle: OracleState = websocket.app.state.oracle
    await websocket.accept()
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    record = None
    if scheme.lower() == "bearer" and token.strip():
        record = await asyncio.to_thread(oracle.keys.authenticate, token.strip())
    if record is None:
        await websocket.close(CLOSE_BAD_KEY, "invalid or missing API key")
        return
    if oracle.hub is None:
        await websocket.close(CLOSE_TRY_AGAIN, "the swarm is not running")
        return
    try:
        await oracle.rate_limiter.hit("scout_connect", record.id)
    except APIError as refusal:  # before the hub, so made-up scout ids cost the store nothing
        await websocket.close(CLOSE_TRY_AGAIN, close_reason(refusal.message))
        return
    with contextlib.suppress(WebSocketDisconnect):
        peer = websocket.client.host if websocket.client else None
        await oracle.hub.serve(TextFrames(websocket), record, peer)


class TextFrames:
    """A scout's WebSocket, where a binary frame is a protocol error: Starlette's
    `receive_text` raised KeyError on one, and the scout got no close reason."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket

    async def receive_text(self) -> str:
        message = await self._websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
        text = message.get("text")
        if text is None:
            raise ProtocolError("binary frames are not part of the protocol; send JSON text")
        return str(text)

    async def send_text(self, data: str) -> None:
        await self._websocket.send_text(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self._websocket.close(code, reason)


@router.get("/scouts", responses=error_responses(503, *KEYED))
async def list_scouts(_: Caller, oracle: Oracle) -> dict[str, Any]:
    hub = _hub(oracle)
    return {"object": "list", "data": views.scout_statuses(hub)}


@router.get("/scouts/reservations", responses=error_responses(503, *KEYED))
async def list_reservations(caller: Caller, oracle: Oracle) -> dict[str, Any]:
    """Reservations holding scouts now: the caller's own (an admin sees all)."""
    hub = _hub(oracle)
    found = await hub.reservations.active(None if caller.is_admin else caller.id)
    return {"object": "list", "data": [views.reservation_view(r) for r in found]}


@router.get("/scouts/{scout_id}/status", responses=error_responses(404, 503, *KEYED))
async def scout_status(scout_id: str, _: Caller, oracle: Oracle) -> dict[str, Any]:
    hub = _hub(oracle)
    return views.scout_status(hub, _scout(hub, scout_id))


@router.get("/scouts/{scout_id}/logs", responses=error_responses(400, 404, 503, *KEYED))
async def scout_logs(
    scout_id: str,
    _: Caller,
    oracle: Oracle,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    level: LogLevel | None = None,
) -> dict[str, Any]:
    hub = _hub(oracle)
    return {"object": "list", "data": views.scout_logs(_scout(hub, scout_id), limit, level)}


@router.post(
    "/scouts/reserve", status_code=201, responses=error_responses(400, 404, 409, 503, *KEYED)
)
async def reserve(body: ReserveRequest, caller: Caller, oracle: Oracle) -> JSONResponse:
    hub = _hub(oracle)
    try:
        reservation = await hub.reserve(
            caller, body.scout_id, body.count or 1, body.reservation_duration
        )
    except SwarmError as error:
        raise _api_error(error) from error
    return JSONResponse(views.reservation_view(reservation), status_code=201)


@router.post("/scouts/release", responses=error_responses(400, 404, 503, *KEYED))
async def release(body: ReservationRef, caller: Caller, oracle: Oracle) -> dict[str, Any]:
    return await _end(oracle, caller, body.reservation_id, cancel=False)


@router.post("/scouts/cancel", responses=error_responses(400, 404, 503, *KEYED))
async def cancel(body: ReservationRef, caller: Caller, oracle: Oracle) -> dict[str, Any]:
    return await _end(oracle, caller, body.reservation_id, cancel=True)


async def _end(
    oracle: OracleState, caller: KeyRecord, reservation_id: str, cancel: bool
) -> dict[str, Any]:
    hub = _hub(oracle)
    try:
        return views.reservation_view(await hub.end_reservation(caller, reservation_id, cancel))
    except SwarmError as error:
        raise _api_error(error) from error


def _api_error(error: SwarmError) -> APIError:
    """The HTTP answer to each thing the swarm refuses."""
    message = str(error)
    match error:
        case ScoutNotFound():
            return APIError(404, message, code="not_found", param="scout_id")
        case ReservationNotFound():
            return APIError(404, message, code="not_found", param="reservation_id")
        case ScoutReservedElsewhere():
            return APIError(409, message, code="conflict")
        case NotEnoughFreeScouts() | TicketsNotReady():
            retry = {"Retry-After": "10"}
            return APIError(503, message, code="service_unavailable", headers=retry)
    return APIError(500, message)


@router.post(
    "/scouts/{scout_id}/golden-tickets", responses=error_responses(400, 404, 409, 503, *ADMIN)
)
async def run_golden_tickets(
    scout_id: str, _: Admin, oracle: Oracle, body: GoldenTicketRun | None = None
) -> dict[str, Any]:
    """Test a scout now: tickets whose answers the oracle knows, scored as they come back (5
    without a body)."""
    body = body or GoldenTicketRun()
    hub = _hub(oracle)
    record = _scout(hub, scout_id)
    if not record.connected:
        raise APIError(409, f"Scout '{scout_id}' is not connected.", code="conflict")
    try:
        results = await hub.run_tickets(scout_id, body.count)
    except SwarmError as error:
        raise _api_error(error) from error
    return views.ticket_run_view(scout_id, results, hub.reputation(record.key_id))


@router.get("/scouts/banned", responses=error_responses(503, *ADMIN))
async def banned_scouts(_: Admin, oracle: Oracle) -> dict[str, Any]:
    trust = _hub(oracle).trust
    banned = await asyncio.to_thread(trust.banned)
    data = [
        views.ban_view(reputation, await asyncio.to_thread(trust.scout_ids_of, reputation.key_id))
        for reputation in banned
    ]
    return {"object": "list", "data": data}


@router.post("/scouts/{scout_id}/unban", responses=error_responses(404, 409, 503, *ADMIN))
async def unban_scout(scout_id: str, _: Admin, oracle: Oracle) -> dict[str, Any]:
    """Lift the ban on the scout's key; its record starts afresh."""
    trust = _hub(oracle).trust
    key_id = await asyncio.to_thread(trust.owner_of, scout_id)
    if key_id is None:
        raise APIError(404, f"No scout with id '{scout_id}'.", code="not_found", param="scout_id")
    banned = await asyncio.to_thread(trust.banned)
    if key_id not in {reputation.key_id for reputation in banned}:
        message = f"The key of scout '{scout_id}' is not banned; its record stays as it is."
        raise APIError(409, message, code="not_banned", param="scout_id")
    reputation = await asyncio.to_thread(trust.unban, key_id)
    return {"scout_id": scout_id, "key_id": key_id, "banned": False, "reputation": reputation.score}
