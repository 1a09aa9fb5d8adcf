"""A scout written against the wire protocol directly, with no model: it joins, answers
every ping, and answers every work frame with an empty draft (so it fails every golden
ticket), or from a script of tokens it was given:

- `record`: it keeps the longest token history work frames have shown it (the oracle's own
  answer, for a script);
- `script` alone: a teacher that drafts the script's next k tokens at once (always ahead, and
  right for the same greedy request);
- `script` with `echo`: the copying cheat, which waits for the client's stream to pass the
  work's position and drafts only the script's tokens up to `echo.decided`, what the test
  has read from that stream (right, and never ahead of the oracle).

It runs in a thread with its own event loop, so synchronous tests can start one, talk to the
oracle, and then look at how it ended. Misbehaving scouts are tested in process instead
(tests/swarm/fakes.py).
"""

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

from tests.conftest import ADMIN_KEY, RunningOracle, auth


def tokenizer_of(oracle: RunningOracle) -> str:
    status = httpx.get(f"{oracle.base_url}/system/status", headers=auth(ADMIN_KEY)).json()
    fingerprint: str = status["model"]["tokenizer_fingerprint"]
    return fingerprint


@dataclass
class EchoFeed:
    """How many tokens of the script the client has read so far (its prompt's included)."""

    decided: int = 0


@dataclass
class RawScout:
    oracle: RunningOracle
    scout_id: str
    key: str = ADMIN_KEY
    tokenizer: str | None = None
    works: int = 0
    sent_tokens: int = 0
    close_code: int | None = None
    close_reason: str = ""
    record: bool = False
    recorded: dict[str, list[int]] = field(default_factory=dict)
    """Each sequence's tokens, as far as work frames have shown them."""
    script: list[int] | None = None
    echo: "EchoFeed | None" = None
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
            tokens = self._answer(frame, position)
            if self.echo is not None and not tokens:
                tokens = await self._echo_later(frame, position)
            self.sent_tokens += len(tokens)
            draft = {"type": "draft", "seq": frame["seq"], "position": position, "tokens": tokens}
            await ws.send(json.dumps(draft))
        with contextlib.suppress(Exception):
            await ws.close()

    async def _echo_later(self, frame: dict[str, Any], end: int) -> list[int]:
        """What the echo cheat does: wait until the stream shows tokens past `end`, and copy
        them (within the work's deadline)."""
        assert self.echo is not None
        for _ in range(int(frame["deadline_ms"]) // 10):
            if self.echo.decided > end:
                break
            await asyncio.sleep(0.005)
        return self._answer(frame, end)

    def longest_recorded(self) -> list[int]:
        return max(self.recorded.values(), key=len, default=[])

    def _answer(self, frame: dict[str, Any], end: int) -> list[int]:
        if self.record:
            seen = self.recorded.setdefault(frame["seq"], [])
            if len(seen) == frame["position"]:
                seen.extend(frame["tokens"])
            return []
        if self.script is None:
            return []
        if self.script[frame["position"] : end] != frame["tokens"]:
            return []  # another request's sequence
        stop = end + int(frame["k"])
        if self.echo is not None:
            stop = min(stop, self.echo.decided)
        return self.script[end:stop]
