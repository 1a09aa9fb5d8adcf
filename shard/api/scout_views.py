"""The swarm's figures as JSON bodies: scouts, their logs, reservations, bans, golden-ticket
runs. Every timestamp is unix seconds as an integer, as OpenAI's are."""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from shard.store.reservations import Reservation
from shard.swarm.hub import Hub
from shard.swarm.registry import LogLevel, ScoutRecord
from shard.swarm.reputation import Reputation
from shard.swarm.tickets import TicketResult


def unix(moment: datetime | float) -> int:
    """Unix seconds, whole."""
    return int(moment.timestamp() if isinstance(moment, datetime) else moment)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def scout_status(
    hub: Hub, record: ScoutRecord, loads: Mapping[str, int] | None = None
) -> dict[str, Any]:
    load = (loads if loads is not None else hub.load()).get(record.scout_id, 0)
    reputation = hub.reputation(record.key_id)
    state = ("busy" if load else "idle") if record.connected else record.status
    now = datetime.now(UTC)
    return {
        "id": record.scout_id,
        "status": state,
        "connected": record.connected,
        "reserved": hub.reserved(record.scout_id),
        "draft_model": record.draft_model,
        "load": load,
        "tasks_completed": record.tasks_completed,
        "tasks_failed": record.tasks_failed,
        "avg_latency_ms": record.avg_latency_ms,
        "uptime_seconds": round(now.timestamp() - record.connected_at, 1)
        if record.connected
        else 0.0,
        "connected_at": unix(record.connected_at),
        "acceptance_rate": record.acceptance_rate,
        "draft_tokens": record.draft_tokens,
        "accepted_tokens": record.accepted_tokens,
        "key_id": record.key_id,
        "reputation": round(reputation.score, 4),
        "golden_tickets": reputation.tickets,
        "golden_ticket_score": _rounded(reputation.golden, 4),
        "live_acceptance_rate": _rounded(reputation.live, 4),
        "banned": reputation.banned(now),
    }


def scout_statuses(hub: Hub) -> list[dict[str, Any]]:
    """Every known scout's status (one pass over the sequences for all their loads)."""
    loads = hub.load()
    return [scout_status(hub, record, loads) for record in hub.scouts()]


def scout_logs(record: ScoutRecord, limit: int, level: LogLevel | None) -> list[dict[str, Any]]:
    return [
        {"timestamp": unix(entry.timestamp), "level": entry.level, "message": entry.message}
        for entry in record.recent_logs(limit, level)
    ]


def reservation_view(reservation: Reservation) -> dict[str, Any]:
    return {
        "id": reservation.id,
        "object": "scout.reservation",
        "scout_id": reservation.scout_ids[0] if reservation.scout_ids else None,
        "scout_ids": list(reservation.scout_ids),
        "reserved_at": unix(reservation.reserved_at),
        "expires_at": unix(reservation.expires_at),
        "status": reservation.status,
    }


def ban_view(reputation: Reputation, scout_ids: list[str]) -> dict[str, Any]:
    return {
        "key_id": reputation.key_id,
        "scout_ids": scout_ids,
        "banned_at": unix(reputation.banned_at) if reputation.banned_at else None,
        "banned_until": unix(reputation.banned_until) if reputation.banned_until else None,
        "reason": reputation.ban_reason,
        "reputation": round(reputation.score, 4),
        "golden_tickets": reputation.tickets,
    }


def ticket_run_view(
    scout_id: str, results: Sequence[TicketResult], reputation: Reputation
) -> dict[str, Any]:
    scores = [result.score for result in results]
    return {
        "object": "scout.golden_tickets",
        "scout_id": scout_id,
        "tickets": [
            {
                "expected": list(result.expected),
                "drafted": list(result.drafted),
                "score": round(result.score, 4),
                "latency_ms": _rounded(result.latency_ms, 1),
            }
            for result in results
        ],
        "average_score": round(sum(scores) / len(scores), 4) if scores else None,
        "reputation": round(reputation.score, 4),
        "banned": reputation.banned(datetime.now(UTC)),
    }
