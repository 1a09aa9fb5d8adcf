"""Reservations: in process, a key holding scouts, conflicts, release, cancel and expiry;
then the HTTP endpoints against a real oracle and scouts that are really connected."""

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from shard.engine.types import ScoutDraft
from shard.store.api_keys import KeyStore
from shard.store.schema import ReservationRow
from shard.swarm.errors import (
    NotEnoughFreeScouts,
    ReservationNotFound,
    ScoutNotFound,
    ScoutReservedElsewhere,
)
from tests.conftest import ADMIN_KEY, RunningOracle, auth
from tests.swarm.conftest import scout_status, wait_for
from tests.swarm.fakes import Rig, run_with_rig
from tests.swarm.raw_scout import RawScout


def test_a_reserved_scout_drafts_only_for_its_key(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        a, b = await rig.join("a"), await rig.join("b")
        held = await rig.hub.reserve(rig.user, "b", 1, 120)
        assert held.scout_ids == ("b",) and held.status == "reserved"
        assert held.expires_at - held.reserved_at == timedelta(seconds=120)
        assert rig.hub.reserved("b") and not rig.hub.reserved("a")

        with pytest.raises(ScoutReservedElsewhere):
            await rig.hub.reserve(rig.admin, "b", 1, 60)
        with pytest.raises(NotEnoughFreeScouts, match="1 scouts are free; 2 were asked for"):
            await rig.hub.reserve(rig.admin, None, 2, 60)
        with pytest.raises(ScoutNotFound):
            await rig.hub.reserve(rig.admin, "nobody", 1, 60)
        again = await rig.hub.reserve(rig.user, "b", 1, 60)  # its own key may hold it again
        assert again.id != held.id
        mine = await rig.hub.reserve(rig.admin, None, 1, 60)
        assert mine.scout_ids == ("a",)

        rig.step("users", [1], owner=rig.user.id)
        rig.step("admins", [2], owner=rig.admin.id)
        rig.step("strangers", [3], owner="key_someone_else")  # every scout is held
        await rig.settle()
        assert [w["seq"] for w in b.pending()] == ["users"]
        assert [w["seq"] for w in a.pending()] == ["admins"]

    run_with_rig(tmp_path, body)


def test_release_and_cancel_end_a_reservation_for_its_owner_only(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        link = await rig.join("s1")
        held = await rig.hub.reserve(rig.user, "s1", 1, 60)
        rig.step("seq", [1, 2], owner=rig.user.id)
        work = await link.next_frame()
        link.answer(work, [3])
        await rig.settle()
        assert rig.engine.drafts.latest("seq") == ScoutDraft("s1", 2, (3,))

        _, stranger = KeyStore(rig.database).create("stranger")
        with pytest.raises(ReservationNotFound):
            await rig.hub.end_reservation(stranger, held.id, cancel=False)
        with pytest.raises(ReservationNotFound):
            await rig.hub.end_reservation(rig.user, "res_missing", cancel=False)

        cancelled = await rig.hub.end_reservation(rig.user, held.id, cancel=True)
        assert cancelled.status == "cancelled" and not rig.hub.reserved("s1")
        assert rig.engine.drafts.latest("seq") is None  # its draft not yet used is dropped
        assert (await link.next_frame("cancel"))["seq"] == "seq"
        assert rig.hub.load() == {"s1": 0}

        other = await rig.hub.reserve(rig.user, "s1", 1, 60)
        released = await rig.hub.end_reservation(rig.admin, other.id, cancel=False)
        assert released.status == "released" and not rig.hub.reserved("s1")
        ended_twice = await rig.hub.end_reservation(rig.admin, other.id, cancel=True)
        assert ended_twice.status == "released"

    run_with_rig(tmp_path, body)


def test_reservations_expire_by_time_and_are_reloaded_from_the_store(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        await rig.join("s1")
        held = await rig.hub.reserve(rig.user, "s1", 1, 60)
        with rig.database.session() as session:
            row = session.get(ReservationRow, held.id)
            assert row is not None
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        assert rig.hub.reserved("s1")  # until the next reload
        await rig.hub.reservations.refresh()
        assert not rig.hub.reserved("s1")
        found = rig.reservations.get(held.id)
        assert found is not None and found.status == "expired"

        made_elsewhere = rig.reservations.create(rig.user.id, ["s1"], 60)  # another oracle
        rig.hub.start()  # its background writer reloads reservations at once
        await asyncio.sleep(0.2)
        assert rig.hub.reservations.holder("s1") == made_elsewhere.key_id

    run_with_rig(tmp_path, body)


# -- the HTTP endpoints, against a real oracle ------------------------------------------------


@pytest.fixture
def two_scouts(swarm: RunningOracle) -> Iterator[list[str]]:
    scouts = [RawScout(swarm, f"res-{n}").start() for n in (1, 2)]
    for scout in scouts:
        assert scout.welcomed.wait(30)
    yield [scout.scout_id for scout in scouts]
    for scout in scouts:
        scout.stop()
    wait_for(lambda: not any(scout_status(swarm, s.scout_id)["connected"] for s in scouts), 30)


def reserve(oracle: RunningOracle, key: str, **body: object) -> httpx.Response:
    return httpx.post(f"{oracle.base_url}/scouts/reserve", json=body, headers=auth(key))


def end(oracle: RunningOracle, key: str, how: str, reservation_id: str) -> httpx.Response:
    return httpx.post(
        f"{oracle.base_url}/scouts/{how}",
        json={"reservation_id": reservation_id},
        headers=auth(key),
    )


def test_the_reservation_endpoints(swarm: RunningOracle, two_scouts: list[str]) -> None:
    first, second = two_scouts
    other = httpx.post(
        f"{swarm.base_url}/keys", json={"name": "reserver"}, headers=auth(ADMIN_KEY)
    ).json()["key"]

    held = reserve(swarm, other, scout_id=second, reservation_duration=120)
    assert held.status_code == 201, held.text
    body = held.json()
    assert body["scout_id"] == second and body["status"] == "reserved"
    assert body["id"].startswith("res_") and body["object"] == "scout.reservation"
    assert isinstance(body["reserved_at"], int) and body["expires_at"] - body["reserved_at"] == 120
    assert scout_status(swarm, second)["reserved"] is True

    conflict = reserve(swarm, ADMIN_KEY, scout_id=second)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"
    none_free = reserve(swarm, ADMIN_KEY, count=2)
    assert none_free.status_code == 503 and "Retry-After" in none_free.headers
    mine = reserve(swarm, ADMIN_KEY, count=1)
    assert mine.status_code == 201 and mine.json()["scout_ids"] == [first]

    mine_id = mine.json()["id"]
    assert end(swarm, other, "release", mine_id).status_code == 404  # not theirs
    released = end(swarm, other, "release", body["id"])
    assert released.status_code == 200 and released.json()["status"] == "released"
    cancelled = end(swarm, ADMIN_KEY, "cancel", mine_id)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


@pytest.mark.parametrize(
    "body",
    [
        {"reservation_duration": 10},
        {"reservation_duration": 3601},
        {"count": 0},
        {"scout_id": "res-1", "count": 2},
        {"unknown": True},
    ],
)
def test_bad_reservations_are_400(swarm: RunningOracle, body: dict[str, object]) -> None:
    response = reserve(swarm, ADMIN_KEY, **body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_scouts_and_reservations_are_404(swarm: RunningOracle) -> None:
    assert reserve(swarm, ADMIN_KEY, scout_id="nobody").status_code == 404
    for path in ("/scouts/release", "/scouts/cancel"):
        response = httpx.post(
            f"{swarm.base_url}{path}", json={"reservation_id": "res_x"}, headers=auth(ADMIN_KEY)
        )
        assert response.status_code == 404
    assert (
        httpx.get(f"{swarm.base_url}/scouts/nobody/status", headers=auth(ADMIN_KEY)).status_code
        == 404
    )
    logs = httpx.get(f"{swarm.base_url}/scouts/nobody/logs", headers=auth(ADMIN_KEY))
    assert logs.status_code == 404
    assert httpx.get(f"{swarm.base_url}/scouts").status_code == 401
