"""The swarm's JSON, in process: unix-second timestamps, the scout status fields, log
filtering, and the HTTP answer to each thing the swarm refuses."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from shard.api import scout_views as views
from shard.api.routes.scouts import _api_error
from shard.store.reservations import Reservation
from shard.swarm.errors import (
    NotEnoughFreeScouts,
    ReservationNotFound,
    ScoutNotFound,
    ScoutReservedElsewhere,
    SwarmError,
    TicketsNotReady,
)
from shard.swarm.registry import ScoutRecord
from shard.swarm.reputation import Reputation
from tests.swarm.fakes import Rig, run_with_rig

MOMENT = datetime(2025, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)


def test_reservations_and_bans_carry_unix_seconds() -> None:
    reservation = Reservation("res_1", "key_1", ("a",), MOMENT, MOMENT, "reserved")
    view = views.reservation_view(reservation)
    assert view["reserved_at"] == view["expires_at"] == 1735787045
    assert (view["scout_id"], view["scout_ids"]) == ("a", ["a"])

    for_good = Reputation("key_1", tickets=10, banned_at=MOMENT, ban_reason="cheating")
    ban = views.ban_view(for_good, ["a", "b"])
    assert ban["banned_at"] == 1735787045 and ban["banned_until"] is None
    assert ban["scout_ids"] == ["a", "b"] and ban["reason"] == "cheating"


def test_logs_are_filtered_by_level_and_cut_to_the_newest() -> None:
    record = ScoutRecord("s1", "key_1", "fake")
    for level in ("debug", "info", "warning", "error", "info"):
        record.log(level, f"a {level} event")
    entries = views.scout_logs(record, limit=2, level="info")
    assert [entry["level"] for entry in entries] == ["error", "info"]
    assert all(isinstance(entry["timestamp"], int) for entry in entries)
    assert len(views.scout_logs(record, limit=100, level="warning")) == 2
    assert len(views.scout_logs(record, limit=100, level=None)) == 5


def test_a_scout_status(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        await rig.join("s1")
        rig.step("seq", [1, 2])
        [status] = views.scout_statuses(rig.hub)
        assert status["id"] == "s1" and status["status"] == "busy" and status["load"] == 1
        assert isinstance(status["connected_at"], int) and status["connected"] is True
        assert status["reserved"] is False and status["banned"] is False
        assert status["key_id"] == rig.admin.id and status["reputation"] == 1.0

    run_with_rig(tmp_path, body)


@pytest.mark.parametrize(
    ("error", "status", "code", "param"),
    [
        (ScoutNotFound("a"), 404, "not_found", "scout_id"),
        (ReservationNotFound("res_1"), 404, "not_found", "reservation_id"),
        (ScoutReservedElsewhere("a"), 409, "conflict", None),
        (NotEnoughFreeScouts(0, 2), 503, "service_unavailable", None),
        (TicketsNotReady(), 503, "service_unavailable", None),
    ],
)
def test_each_refusal_has_its_http_answer(
    error: SwarmError, status: int, code: str, param: str | None
) -> None:
    api_error = _api_error(error)
    assert (api_error.status, api_error.code, api_error.param) == (status, code, param)
    assert str(api_error) == str(error)
    if status == 503:
        assert api_error.headers == {"Retry-After": "10"}
