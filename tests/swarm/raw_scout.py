"""Scouts written against the wire protocol directly, to misbehave on purpose.

Each runs in a thread with its own event loop, so synchronous tests can start one, send chat
requests, and then look at how it ended.
"""

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass, field
from typing import Literal

import httpx
import websockets

from tests.conftest import ADMIN_KEY, RunningOracle, auth

Behaviour = Literal[
    "empty",  # answers every work with an empty (valid) draft
    "oov",  # token ids outside the vocabulary
    "wrong_position",  # drafts for a position it was not asked about
    "oversized",  # a 100 kB frame
    "malformed",  # a frame that is not JSON
    "silent",  # never answers work
    "vanish",  # disconnects at its first work
    "flood",  # drafts for work it never got, as fast as it can
    "replay",  # sends its first draft again for every later work
    "late",  # answers each work a second after it came
]


def tokenizer_of(oracle: RunningOracle) -> str:
    status = httpx.get(f"{oracle.base_url}/system/status", headers=auth(ADMIN_KEY)).json()
    fingerprint: str = status["model"]["tokenizer_fingerprint"]
    return fingerprint


@dataclass
class RawScout:
    oracle: RunningOracle
    scout_id: str
    behaviour: Behaviour
    key: str = ADMIN_KEY
    tokenizer: str | None = None
    works: int = 0
    replayed: list[int] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    welcomed: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "RawScout":
        if self.tokenizer is None:
            self.tokenizer = tokenizer_of(self.oracle)
        threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True).start()
        return self

    def __repr__(self) -> str:
        return (
            f"RawScout({self.scout_id}, {self.behaviour}, {self.close_code}, {self.close_reason})"
        )

    def stop(self) -> None:
        self._stop.set()
        self.ended.wait(10)

    async def _run(self) -> None:
        url = self.oracle.base_url.replace("http://", "ws://") + "/scouts/connect"
        try:
            async with websockets.connect(
                url, additional_headers=auth(self.key), max_size=2**22
            ) as ws:
                hello = {
                    "type": "hello",
                    "version": 1,
                    "scout_id": self.scout_id,
                    "tokenizer": self.tokenizer,
                    "draft_model": f"raw-{self.behaviour}",
                }
                await ws.send(json.dumps(hello))
                welcome = json.loads(await ws.recv())
                assert welcome["type"] == "welcome"
                self.welcomed.set()
                if self.behaviour == "flood":
                    await self._flood(ws)
                await self._serve(ws)
        except websockets.ConnectionClosed as closed:
            if closed.rcvd is not None:
                self.close_code, self.close_reason = closed.rcvd.code, closed.rcvd.reason
        except Exception as error:
            self.close_reason = repr(error)
        finally:
            self.ended.set()

    async def _flood(self, ws: websockets.ClientConnection) -> None:
        for number in range(2000):
            draft = {"type": "draft", "seq": f"nope{number}", "position": 1, "tokens": [1]}
            await ws.send(json.dumps(draft))

    async def _serve(self, ws: websockets.ClientConnection) -> None:
        while not self._stop.is_set():
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
            except TimeoutError:
                continue
            if frame["type"] == "ping":
                await ws.send(json.dumps({"type": "pong", "nonce": frame["nonce"]}))
            if frame["type"] != "work":
                continue
            self.works += 1
            await self._answer(ws, frame)
            if self.behaviour == "vanish":
                return
        with contextlib.suppress(Exception):
            await ws.close()

    async def _answer(self, ws: websockets.ClientConnection, work: dict[str, object]) -> None:
        tokens = work["tokens"]
        assert isinstance(tokens, list) and isinstance(work["position"], int)
        position = work["position"] + len(tokens)
        draft: dict[str, object] = {"type": "draft", "seq": work["seq"], "position": position}
        match self.behaviour:
            case "empty" | "flood":
                await ws.send(json.dumps({**draft, "tokens": []}))
            case "oov":
                await ws.send(json.dumps({**draft, "tokens": [10**9, 3]}))
            case "wrong_position":
                await ws.send(json.dumps({**draft, "position": position + 3, "tokens": [1]}))
            case "oversized":
                await ws.send(json.dumps({**draft, "tokens": [], "pad": "x" * 100_000}))
            case "malformed":
                await ws.send("{this is not json")
            case "silent":
                pass
            case "vanish":  # no close frame: the TCP connection just goes
                ws.transport.abort()
            case "replay":
                if not self.replayed:
                    self.replayed = [int(t) for t in tokens[-8:]]
                await ws.send(json.dumps({**draft, "tokens": self.replayed[: int(str(work["k"]))]}))
            case "late":
                await asyncio.sleep(1.0)
                await ws.send(json.dumps({**draft, "tokens": [int(t) for t in tokens[-2:]]}))
