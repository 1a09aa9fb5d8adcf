"""The swarm's endpoints: WS /scouts/connect where scouts join, their figures and logs, and
reservations. Thin: the hub does the work."""

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.websockets import WebSocketDisconnect

from shard.api.auth import keyed
from shard.api.errors import APIError
from shard.api.oracle_state import OracleState, get_oracle
from shard.store.api_keys import KeyRecord
from shard.store.reservations import Reservation
from shard.swarm.hub import Hub, ReservationError, ScoutRecord
from shard.swarm.protocol import CLOSE_BAD_KEY

router = APIRouter()
Caller = Annotated[KeyRecord, Depends(keyed("scouts"))]
Admin = Annotated[KeyRecord, Depends(keyed("scouts", admin=True))]
Oracle = Annotated[OracleState, Depends(get_oracle)]


class ReserveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scout_id: str | None = Field(default=None, max_length=64)
    count: int | None = Field(default=None, ge=1, le=64)
    reservation_duration: int = Field(default=300, ge=30, le=3600)

    @model_validator(mode="after")
    def _one_target(self) -> "ReserveRequest":
        if self.scout_id is not None and self.count not in (None, 1):
            raise ValueError("give scout_id or count, not both")
        return self


class GoldenTicketRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(default=5, ge=1, le=50)


class ReservationRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reservation_id: str = Field(max_length=64)


def reservation_view(reservation: Reservation) -> dict[str, Any]:
    return {
        "id": reservation.id,
        "object": "scout.reservation",
        "scout_id": reservation.scout_ids[0] if reservation.scout_ids else None,
        "scout_ids": list(reservation.scout_ids),
        "reserved_at": reservation.reserved_at.isoformat(),
        "expires_at": reservation.expires_at.isoformat(),
        "status": reservation.status,
    }


def _hub(oracle: OracleState) -> Hub:
    if oracle.hub is None:
        raise APIError(503, "The swarm is not running yet.", headers={"Retry-After": "5"})
    return oracle.hub


def _scout(hub: Hub, scout_id: str) -> ScoutRecord:
    record = hub.records.get(scout_id)
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
    if record is None or oracle.hub is None:
        reason = "invalid or missing API key" if record is None else "the swarm is not running"
        await websocket.close(CLOSE_BAD_KEY if record is None else 1013, reason)
        return
    with contextlib.suppress(WebSocketDisconnect):
        await oracle.hub.serve(websocket, record)


@router.get("/scouts")
async def list_scouts(_: Caller, oracle: Oracle) -> dict[str, Any]:
    hub = _hub(oracle)
    return {"object": "list", "data": hub.statuses()}


@router.get("/scouts/{scout_id}/status")
async def scout_status(scout_id: str, _: Caller, oracle: Oracle) -> dict[str, Any]:
    hub = _hub(oracle)
    return hub.status_of(_scout(hub, scout_id))


@router.get("/scouts/{scout_id}/logs")
async def scout_logs(
    scout_id: str,
    _: Caller,
    oracle: Oracle,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    level: Literal["debug", "info", "warning", "error"] | None = None,
) -> dict[str, Any]:
    hub = _hub(oracle)
    return {"object": "list", "data": hub.logs_of(_scout(hub, scout_id), limit, level)}


@router.post("/scouts/reserve", status_code=201)
async def reserve(body: ReserveRequest, caller: Caller, oracle: Oracle) -> JSONResponse:
    hub = _hub(oracle)
    try:
        reservation = hub.reserve(caller, body.scout_id, body.count or 1, body.reservation_duration)
    except ReservationError as error:
        raise _api_error(error) from error
    return JSONResponse(reservation_view(reservation), status_code=201)


@router.post("/scouts/release")
async def release(body: ReservationRef, caller: Caller, oracle: Oracle) -> dict[str, Any]:
    return _end(oracle, caller, body.reservation_id, cancel=False)


@router.post("/scouts/cancel")
async def cancel(body: ReservationRef, caller: Caller, oracle: Oracle) -> dict[str, Any]:
    return _end(oracle, caller, body.reservation_id, cancel=True)


def _end(
    oracle: OracleState, caller: KeyRecord, reservation_id: str, cancel: bool
) -> dict[str, Any]:
    try:
        return reservation_view(_hub(oracle).end_reservation(caller, reservation_id, cancel))
    except ReservationError as error:
        raise _api_error(error) from error


def _api_error(error: ReservationError) -> APIError:
    code = {404: "not_found", 409: "conflict", 503: "service_unavailable"}.get(error.status)
    headers = {"Retry-After": "10"} if error.status == 503 else None
    return APIError(error.status, str(error), code=code, param=error.param, headers=headers)


@router.post("/scouts/{scout_id}/golden-tickets")
async def run_golden_tickets(
    scout_id: str, body: GoldenTicketRun, _: Admin, oracle: Oracle
) -> dict[str, Any]:
    """Test a scout now: tickets whose answers the oracle knows, scored as they come back."""
    hub = _hub(oracle)
    record = _scout(hub, scout_id)
    if not record.connected:
        raise APIError(409, f"Scout '{scout_id}' is not connected.", code="conflict")
    try:
        results = await hub.run_tickets(scout_id, body.count)
    except ReservationError as error:
        raise _api_error(error) from error
    reputation = hub.trust.reputation(record.key_id)
    scores = [result.score for result in results]
    return {
        "object": "scout.golden_tickets",
        "scout_id": scout_id,
        "tickets": [
            {
                "expected": list(result.expected),
                "drafted": list(result.drafted),
                "score": round(result.score, 4),
                "latency_ms": None if result.latency_ms is None else round(result.latency_ms, 1),
            }
            for result in results
        ],
        "average_score": round(sum(scores) / len(scores), 4) if scores else None,
        "reputation": round(reputation.score, 4),
        "banned": reputation.banned(datetime.now(UTC)),
    }


@router.get("/scouts/banned")
async def banned_scouts(_: Admin, oracle: Oracle) -> dict[str, Any]:
    hub = _hub(oracle)
    banned = await asyncio.to_thread(hub.trust.banned)
    data = []
    for reputation in banned:
        scout_ids = await asyncio.to_thread(hub.trust.records.scout_ids_of, reputation.key_id)
        data.append(
            {
                "key_id": reputation.key_id,
                "scout_ids": scout_ids,
                "banned_at": reputation.banned_at.isoformat() if reputation.banned_at else None,
                "banned_until": (
                    reputation.banned_until.isoformat() if reputation.banned_until else None
                ),
                "reason": reputation.ban_reason,
                "reputation": round(reputation.score, 4),
                "golden_tickets": reputation.tickets,
            }
        )
    return {"object": "list", "data": data}


@router.post("/scouts/{scout_id}/unban")
async def unban_scout(scout_id: str, _: Admin, oracle: Oracle) -> dict[str, Any]:
    """Lift the ban on the scout's key; its record starts afresh."""
    hub = _hub(oracle)
    key_id = await asyncio.to_thread(hub.trust.records.owner_of, scout_id)
    if key_id is None:
        raise APIError(404, f"No scout with id '{scout_id}'.", code="not_found", param="scout_id")
    reputation = await asyncio.to_thread(hub.trust.unban, key_id)
    return {"scout_id": scout_id, "key_id": key_id, "banned": False, "reputation": reputation.score}
