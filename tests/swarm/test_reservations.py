"""POST /scouts/reserve, /scouts/release and /scouts/cancel against scouts that are really
connected, and a key's requests drafted by its reserved scout."""

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import ADMIN_KEY, SERVED_ALIAS, RunningOracle, auth
from tests.swarm.conftest import scout_status, wait_for
from tests.swarm.raw_scout import RawScout


@pytest.fixture
def two_scouts(solo_outputs: list[str], swarm: RunningOracle) -> Iterator[list[str]]:
    scouts = [RawScout(swarm, f"res-{n}", "empty").start() for n in (1, 2)]
    for scout in scouts:
        assert scout.welcomed.wait(30)
    yield [scout.scout_id for scout in scouts]
    for scout in scouts:
        scout.stop()
    wait_for(lambda: not any(scout_status(swarm, s.scout_id)["connected"] for s in scouts), 30)


def reserve(oracle: RunningOracle, key: str, **body: object) -> httpx.Response:
    return httpx.post(f"{oracle.base_url}/scouts/reserve", json=body, headers=auth(key))


def tasks(oracle: RunningOracle, scout_id: str) -> int:
    completed: int = scout_status(oracle, scout_id)["tasks_completed"]
    return completed


def ask(oracle: RunningOracle, key: str) -> None:
    client = openai.OpenAI(base_url=oracle.base_url, api_key=key, max_retries=0, timeout=120)
    client.chat.completions.create(
        model=SERVED_ALIAS,
        messages=[{"role": "user", "content": "Name a bird."}],
        temperature=0,
        max_tokens=12,
    )


def test_reservations_hold_scouts_for_their_key(
    swarm: RunningOracle, two_scouts: list[str]
) -> None:
    first, second = two_scouts
    other = httpx.post(
        f"{swarm.base_url}/keys", json={"name": "reserver"}, headers=auth(ADMIN_KEY)
    ).json()["key"]

    held = reserve(swarm, other, scout_id=second, reservation_duration=120)
    assert held.status_code == 201, held.text
    body = held.json()
    assert body["scout_id"] == second and body["status"] == "reserved"
    assert body["id"].startswith("res_") and body["expires_at"] > body["reserved_at"]

    conflict = reserve(swarm, ADMIN_KEY, scout_id=second)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "conflict"
    none_free = reserve(swarm, ADMIN_KEY, count=2)
    assert none_free.status_code == 503
    assert "Retry-After" in none_free.headers
    mine = reserve(swarm, ADMIN_KEY, count=1)
    assert mine.status_code == 201 and mine.json()["scout_ids"] == [first]

    # each key's requests are drafted by its own reserved scout, never the other's
    before = {s: tasks(swarm, s) for s in two_scouts}
    ask(swarm, other)
    after_other = {s: tasks(swarm, s) for s in two_scouts}
    assert after_other[second] > before[second]
    assert after_other[first] == before[first]
    ask(swarm, ADMIN_KEY)
    assert tasks(swarm, first) > after_other[first]
    assert tasks(swarm, second) == after_other[second]

    # only the owner (or an admin) ends a reservation
    mine_id = mine.json()["id"]
    stranger = httpx.post(
        f"{swarm.base_url}/scouts/release", json={"reservation_id": mine_id}, headers=auth(other)
    )
    assert stranger.status_code == 404
    released = httpx.post(
        f"{swarm.base_url}/scouts/release",
        json={"reservation_id": held.json()["id"]},
        headers=auth(other),
    )
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert reserve(swarm, ADMIN_KEY, scout_id=second).status_code == 201
    cancelled = httpx.post(
        f"{swarm.base_url}/scouts/cancel", json={"reservation_id": mine_id}, headers=auth(ADMIN_KEY)
    )
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
