"""The scout node against a fake oracle: it refuses a tokenizer it does not share, stops on
refusals retrying cannot fix, and redials with backoff when the oracle goes away."""

import asyncio
import json
import time
from collections.abc import Collection
from typing import Any, cast

import pytest
import websockets
from websockets.asyncio.server import ServerConnection

from shard.config import ScoutSettings
from shard.swarm.draft_model import DraftModel
from shard.swarm.protocol import PROTOCOL_VERSION
from shard.swarm.scout import Scout, ScoutRefused, websocket_url

FINGERPRINT = "f" * 64


class FakeModel:
    fingerprint = FINGERPRINT
    n_vocab = 100

    def run_ahead(self, limit: int, owed: Collection[str] = ()) -> str | None:
        return None  # nothing to draft ahead for


def scout_for(port: int) -> Scout:
    settings = ScoutSettings(
        oracle=f"http://127.0.0.1:{port}", key="sk-oracle-" + "k" * 40, scout_id="unit"
    )
    return Scout(settings, cast(DraftModel, FakeModel()))


def welcome(tokenizer: str) -> str:
    return json.dumps(
        {
            "type": "welcome",
            "version": PROTOCOL_VERSION,
            "scout_id": "unit",
            "oracle_version": "test",
            "model": "m",
            "tokenizer": tokenizer,
        }
    )


def test_websocket_url_from_the_oracle_base_url() -> None:
    assert websocket_url("http://h:8000") == "ws://h:8000/scouts/connect"
    assert websocket_url("https://h/v1/") == "wss://h/scouts/connect"
    assert websocket_url("h:9") == "ws://h:9/scouts/connect"


async def serve_once(handler: Any) -> tuple[Any, int]:
    server = await websockets.serve(handler, "127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    return server, port


def test_the_scout_refuses_an_oracle_with_another_tokenizer() -> None:
    hellos: list[dict[str, Any]] = []

    async def handler(connection: ServerConnection) -> None:
        hellos.append(json.loads(await connection.recv()))
        await connection.send(welcome("0" * 64))
        await connection.wait_closed()

    async def scenario() -> None:
        server, port = await serve_once(handler)
        async with server:
            with pytest.raises(ScoutRefused, match="tokenizer"):
                await asyncio.wait_for(scout_for(port).run_forever(), 20)

    asyncio.run(scenario())
    assert hellos[0]["tokenizer"] == FINGERPRINT
    assert hellos[0]["scout_id"] == "unit"


@pytest.mark.parametrize(
    ("code", "reason"),
    [(4009, "tokenizer mismatch: use another draft model"), (4003, "banned: reputation 0.10")],
)
def test_the_scout_stops_when_the_oracle_refuses_it(code: int, reason: str) -> None:
    async def handler(connection: ServerConnection) -> None:
        await connection.recv()
        await connection.close(code, reason)

    async def scenario() -> None:
        server, port = await serve_once(handler)
        async with server:
            with pytest.raises(ScoutRefused, match=f"\\({code}\\): {reason}"):
                await asyncio.wait_for(scout_for(port).run_forever(), 20)

    asyncio.run(scenario())


def test_the_scout_reconnects_with_backoff_and_answers_pings() -> None:
    arrivals: list[float] = []
    pongs: list[dict[str, Any]] = []

    async def handler(connection: ServerConnection) -> None:
        arrivals.append(asyncio.get_running_loop().time())
        await connection.recv()
        await connection.send(welcome(FINGERPRINT))
        await connection.send(json.dumps({"type": "ping", "nonce": len(arrivals)}))
        pongs.append(json.loads(await connection.recv()))
        await connection.close(1012, "going away")  # not a refusal: the scout must redial

    async def scenario() -> None:
        server, port = await serve_once(handler)
        async with server:
            running = asyncio.create_task(scout_for(port).run_forever())
            while len(arrivals) < 3:
                await asyncio.sleep(0.05)
            running.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert [p["nonce"] for p in pongs[:2]] == [1, 2]
    first_wait, second_wait = arrivals[1] - arrivals[0], arrivals[2] - arrivals[1]
    assert 0.7 < first_wait < 1.5  # about 1 s, with jitter
    assert second_wait > first_wait  # then about 2 s


class Drafter(FakeModel):
    """Sequences whose next token takes `decode_s` to draft (a long prompt, a slow
    machine); it drafts one token for each, owed answers first."""

    def __init__(self, decode_s: float) -> None:
        self.decode_s = decode_s
        self.tokens: dict[str, list[int]] = {}
        self.drafted: dict[str, list[int]] = {}

    def answer(self, key: str, position: int, tokens: list[int], k: int) -> tuple[int, list[int]]:
        self.tokens.setdefault(key, [])[position:] = tokens
        return len(self.tokens[key]), self.drafted.get(key, [])[:k]

    def ahead(self, key: str) -> tuple[int, list[int]]:
        return len(self.tokens.get(key, [])), list(self.drafted.get(key, []))

    def run_ahead(self, limit: int, owed: Collection[str] = ()) -> str | None:
        waiting = [key for key in self.tokens if not self.drafted.get(key)]
        if not waiting:
            return None
        key = min(waiting, key=lambda key: key not in owed)
        time.sleep(self.decode_s)
        self.drafted[key] = [42]
        return key

    def forget(self, key: str) -> None:
        pass


def answers_to(seqs: list[str], decode_s: float) -> list[tuple[float, dict[str, Any]]]:
    """Send a scout with a `Drafter` work for each sequence; its first len(seqs) frames,
    each with the seconds since the work was sent."""
    answers: list[tuple[float, dict[str, Any]]] = []

    async def handler(connection: ServerConnection) -> None:
        await connection.recv()
        await connection.send(welcome(FINGERPRINT))
        for seq in seqs:
            work = {"seq": seq, "position": 0, "tokens": [1, 2, 3], "k": 4, "deadline_ms": 1000}
            await connection.send(json.dumps({"type": "work", **work}))
        sent = time.monotonic()
        for _ in seqs:
            answer = json.loads(await connection.recv())
            answers.append((time.monotonic() - sent, answer))
        await connection.close(1012, "going away")

    async def scenario() -> None:
        server, port = await serve_once(handler)
        settings = ScoutSettings(oracle=f"http://127.0.0.1:{port}", key="k" * 40, scout_id="u")
        async with server:
            running = asyncio.create_task(
                Scout(settings, cast(DraftModel, Drafter(decode_s))).run_forever()
            )
            while len(answers) < len(seqs):
                await asyncio.sleep(0.01)
            running.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    return answers


@pytest.mark.parametrize(
    ("decode_s", "tokens", "within_s"),
    [(0.05, [42], (0.05, 0.4)), (2.0, [], (0.45, 0.9))],
    ids=["with-its-first-token", "empty-by-half-the-deadline"],
)
def test_work_with_nothing_drafted_is_answered_with_a_prediction_or_in_time(
    decode_s: float, tokens: list[int], within_s: tuple[float, float]
) -> None:
    """An answer with nothing drafted ahead waits for the first token drafted, a prediction
    of one the oracle has not sent (while an answer is owed it sends no more), so even a
    scout no faster than the oracle shows it drafts. It never waits past half the deadline."""
    [(elapsed, draft)] = answers_to(["0123456789abcdef"], decode_s)
    assert (draft["type"], draft["position"], draft["tokens"]) == ("draft", 3, tokens)
    assert within_s[0] <= elapsed < within_s[1]


def test_one_answer_is_owed_at_a_time() -> None:
    """The oracle sends an owed sequence no news until its token; a scout behind on several
    sequences answers all but one at once, so it keeps hearing what the oracle decided."""
    frames = [frame for _, frame in answers_to(["a" * 16, "b" * 16], 0.2)]
    assert [(frame["seq"], frame["tokens"]) for frame in frames] == [
        ("b" * 16, []),
        ("a" * 16, [42]),
    ]
