"""One scout's session: the handshake (may it join?), then a task writing its frames and a
loop reading them, until it leaves or is dropped; and the pings that find silent scouts.

Whatever a scout sends, only that scout suffers: a ProtocolError from any frame ends its
session with the error's close code, and a broken socket ends it quietly. The store work of
the handshake (whose scout id is it? is its key banned?) runs in a worker thread.
"""

import asyncio
import contextlib
import time

from shard import __version__
from shard.store.api_keys import KeyRecord
from shard.swarm.dispatch import Dispatch
from shard.swarm.engine_handle import EngineHandle
from shard.swarm.placement import is_this_host
from shard.swarm.protocol import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOKENIZER_MISMATCH,
    CLOSE_TRY_AGAIN,
    SUPPORTED_VERSIONS,
    Draft,
    Hello,
    Ping,
    Pong,
    ProtocolError,
    Resync,
    Welcome,
    encode,
    parse_scout_frame,
)
from shard.swarm.registry import Registry, ScoutLink, ScoutRecord, close_link
from shard.swarm.tickets import Tickets
from shard.swarm.trust import Trust

HELLO_TIMEOUT_S = 10.0
MAX_FRAMES_PER_SECOND = 500


class Sessions:
    def __init__(
        self,
        registry: Registry,
        dispatch: Dispatch,
        tickets: Tickets,
        trust: Trust,
        engine: EngineHandle,
        model_name: str,
    ) -> None:
        self._registry = registry
        self._dispatch = dispatch
        self._tickets = tickets
        self._trust = trust
        self._engine = engine
        self._model_name = model_name

    async def serve(self, link: ScoutLink, key: KeyRecord, peer: str | None = None) -> None:
        """Handshake, then read the scout's frames until it leaves or is dropped. `peer`, the
        host it connects from, decides whether its `local_threads` are believed."""
        try:
            hello = await asyncio.wait_for(_read_hello(link), HELLO_TIMEOUT_S)
        except (TimeoutError, ProtocolError) as error:
            reason = error.reason if isinstance(error, ProtocolError) else "no hello in time"
            code = error.close_code if isinstance(error, ProtocolError) else CLOSE_PROTOCOL_ERROR
            await close_link(link, code, reason)
            return
        refusal = self._refusal(hello)
        if refusal is None:
            refusal = await asyncio.to_thread(self._trust.refusal, hello.scout_id, key.id)
        if refusal is not None:
            await close_link(link, *refusal)
            return
        local_threads = (hello.local_threads or 0) if is_this_host(peer) else 0
        record = await self._registry.attach(
            link, hello.scout_id, key.id, hello.draft_model, local_threads
        )
        record.protocol_version = hello.version
        welcome = Welcome(
            version=hello.version,
            scout_id=hello.scout_id,
            oracle_version=__version__,
            model=self._model_name,
            tokenizer=hello.tokenizer,  # equal to the oracle's, or the scout was refused
        )
        writer: asyncio.Task[None] | None = None
        try:
            await link.send_text(encode(welcome))  # before any queued work: welcome is first
            writer = asyncio.create_task(_write_forever(record.outbox, link))
            record.log("info", f"connected with draft model {hello.draft_model or 'unnamed'}")
            if local_threads:
                record.log("info", f"drafts on this machine with {local_threads} CPU thread(s)")
            elif hello.local_threads:
                record.log(
                    "warning",
                    f"says it drafts on this machine but connects from {peer}: no threads "
                    "ceded, so the two may share cores",
                )
            self._tickets.fill_when_idle()
            await self._read_forever(record, link)
        except ProtocolError as error:
            if record.link is link:
                await self._registry.drop(record, error.reason, error.close_code)
        except Exception as error:  # the socket went away
            if record.link is link:
                reason = f"connection lost: {type(error).__name__}"
                self._registry.detach(record, "disconnected", reason)
        finally:
            if writer is not None:
                writer.cancel()
            if record.link is link:
                self._registry.detach(record, "disconnected", "scout left")

    def _refusal(self, hello: Hello) -> tuple[int, str] | None:
        """Why the scout cannot join this oracle, as far as the oracle itself can tell."""
        if hello.version not in SUPPORTED_VERSIONS:
            spoken = " and ".join(str(version) for version in SUPPORTED_VERSIONS)
            return CLOSE_PROTOCOL_ERROR, (
                f"protocol version {hello.version} is not supported; this oracle speaks "
                f"versions {spoken}"
            )
        status = self._engine.status()
        if status is None:
            return CLOSE_TRY_AGAIN, "the oracle's model is still loading; try again shortly"
        if hello.tokenizer != status.tokenizer_fingerprint:
            return CLOSE_TOKENIZER_MISMATCH, (
                f"tokenizer mismatch: oracle {status.tokenizer_fingerprint[:12]}, scout "
                f"{hello.tokenizer[:12]}; use a draft model with the oracle's tokenizer"
            )
        return None

    async def _read_forever(self, record: ScoutRecord, link: ScoutLink) -> None:
        budget = _FrameBudget()
        while record.link is link:
            text = await link.receive_text()
            budget.spend()
            frame = parse_scout_frame(text)
            record.last_seen = time.monotonic()
            if isinstance(frame, Draft):
                if not self._tickets.take(record, frame):
                    self._dispatch.take_draft(record, frame)
            elif isinstance(frame, Resync):
                self._dispatch.resync(record, frame.seq)
            elif isinstance(frame, Pong):
                pass
            else:
                raise ProtocolError("hello may only be sent once")

    def ping(self, now: float, nonce: int, interval_s: float) -> None:
        """Ping every connected scout; drop those silent for three intervals."""
        silent_for = 3 * interval_s
        for record in self._registry.connected:
            if now - record.last_seen > silent_for:
                self._registry.drop_soon(record, f"silent for {silent_for:.0f} s")
            else:
                self._registry.send(record.scout_id, Ping(nonce=nonce))


async def _read_hello(link: ScoutLink) -> Hello:
    frame = parse_scout_frame(await link.receive_text())
    if not isinstance(frame, Hello):
        raise ProtocolError(f"the first frame must be hello, not {frame.type}")
    return frame


async def _write_forever(outbox: "asyncio.Queue[str]", link: ScoutLink) -> None:
    """Send this connection's frames (its own outbox: a reconnect gets a new one)."""
    with contextlib.suppress(Exception):
        while True:
            await link.send_text(await outbox.get())


class _FrameBudget:
    """At most MAX_FRAMES_PER_SECOND frames from one connection in any clock second."""

    def __init__(self) -> None:
        self._second = 0
        self._frames = 0

    def spend(self) -> None:
        second = int(time.monotonic())
        if second != self._second:
            self._second, self._frames = second, 0
        self._frames += 1
        if self._frames > MAX_FRAMES_PER_SECOND:
            raise ProtocolError(f"more than {MAX_FRAMES_PER_SECOND} frames a second")
