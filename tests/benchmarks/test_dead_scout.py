"""The dead scout performs the real handshake, then ignores work but keeps the socket alive."""

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from benchmarks import dead_scout

KEY = "sk-oracle-test"
FINGERPRINT = "tok-1234"


class FakeOracle:
    """/system/status over HTTP and /scouts/connect over WebSocket, on one port."""

    def __init__(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.hello: dict[str, Any] | None = None
        self.authorization: str | None = None
        self.pong_received = False
        self.done = asyncio.Event()

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/system/status":
            body = json.dumps({"model": {"tokenizer_fingerprint": FINGERPRINT}})
            response = connection.respond(200, body)
            response.headers = Headers({"Content-Type": "application/json"})
            response.headers["Content-Length"] = str(len(body))
            return response
        if request.path != "/scouts/connect":
            return connection.respond(404, "no\n")
        self.authorization = request.headers.get("Authorization")
        return None

    async def handler(self, websocket: ServerConnection) -> None:
        self.hello = json.loads(await websocket.recv())
        await websocket.send(json.dumps(self.reply))
        if self.reply["type"] == "welcome":
            for position in range(3):  # work the dead scout must swallow without answering
                await websocket.send(json.dumps({"type": "work", "position": position}))
            await asyncio.wait_for(await websocket.ping(), timeout=5)
            self.pong_received = True
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(websocket.recv(), timeout=0.3)  # no answer, ever
        await websocket.close()
        self.done.set()


def _run_against(reply: dict[str, Any]) -> FakeOracle:
    oracle = FakeOracle(reply)

    async def go() -> None:
        async with serve(
            oracle.handler, "127.0.0.1", 0, process_request=oracle.process_request
        ) as server:
            port = server.sockets[0].getsockname()[1]
            await asyncio.wait_for(dead_scout.run(f"http://127.0.0.1:{port}", KEY, "d1"), 10)
            await asyncio.wait_for(oracle.done.wait(), 5)

    asyncio.run(go())
    return oracle


def test_handshake_then_silence() -> None:
    oracle = _run_against({"type": "welcome", "scout_id": "d1"})
    assert oracle.authorization == f"Bearer {KEY}"
    assert oracle.hello == {
        "type": "hello",
        "version": 1,
        "scout_id": "d1",
        "tokenizer": FINGERPRINT,
        "draft_model": "dead",
    }
    assert oracle.pong_received


def test_anything_but_welcome_is_a_failure() -> None:
    with pytest.raises(RuntimeError, match="expected a welcome"):
        _run_against({"type": "error", "reason": "wrong tokenizer"})


def test_connect_url() -> None:
    assert dead_scout.connect_url("http://h:1/") == "ws://h:1/scouts/connect"
    assert dead_scout.connect_url("https://h") == "wss://h/scouts/connect"
    with pytest.raises(ValueError):
        dead_scout.connect_url("h:1")
