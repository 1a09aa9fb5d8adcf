"""A scout written against the wire protocol directly, with no model: it joins, answers
every work frame with an empty draft (so it fails every golden ticket) and every ping.

It runs in a thread with its own event loop, so synchronous tests can start one, talk to the
oracle, and then look at how it ended. Misbehaving scouts are tested in process instead
(tests/swarm/fakes.py).
"""

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass, field

import httpx
import websockets

from tests.conftest import ADMIN_KEY, RunningOracle, auth


def tokenizer_of(oracle: RunningOracle) -> str:
    status = httpx.get(f"{oracle.base_url}/system/status", headers=auth(ADMIN_KEY)).json()
    fingerprint: str = status["model"]["tokenizer_fingerprint"]
    return fingerprint


@dataclass
class RawScout:
    oracle: RunningOracle
    scout_id: str
    key: str = ADMIN_KEY
    tokenizer: str | None = None
    works: int = 0
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
        return f"RawScout({self.scout_id}, {self.close_code}, {self.close_reason})"

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
                    "draft_model": "raw",
                }
                await ws.send(json.dumps(hello))
                welcome = json.loads(await ws.recv())
                assert welcome["type"] == "welcome"
                self.welcomed.set()
                await self._serve(ws)
        except websockets.ConnectionClosed as closed:
            if closed.rcvd is not None:
                self.close_code, self.close_reason = closed.rcvd.code, closed.rcvd.reason
        except Exception as error:
            self.close_reason = repr(error)
        finally:
            self.ended.set()

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
            position = frame["position"] + len(frame["tokens"])
            draft = {"type": "draft", "seq": frame["seq"], "position": position, "tokens": []}
            await ws.send(json.dumps(draft))
        with contextlib.suppress(Exception):
            await ws.close()
