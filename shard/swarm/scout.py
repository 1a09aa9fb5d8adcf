"""`shard scout`: a volunteer node that dials out to an oracle and drafts tokens for it.

It works behind NAT (it connects, the oracle never dials in), keeps each sequence's state
between work frames, answers only the newest work per sequence, drafts ahead of the oracle
while it waits (so work is answered from tokens already drafted), and reconnects with
exponential backoff when the oracle goes away. Refusals that retrying cannot fix (wrong
tokenizer, bad key, banned) end the process with the oracle's reason.
"""

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection

from shard.config import ScoutSettings
from shard.engine.devices import GpuOffload
from shard.swarm.draft_model import DraftModel, NeedsResync
from shard.swarm.placement import place, yield_to_the_oracle
from shard.swarm.protocol import (
    CLOSE_BAD_KEY,
    CLOSE_BANNED,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOKENIZER_MISMATCH,
    MAX_ORACLE_FRAME_BYTES,
    PROTOCOL_VERSION,
    Cancel,
    Draft,
    Hello,
    Ping,
    Pong,
    ProtocolError,
    Resync,
    Welcome,
    Work,
    encode,
    parse_oracle_frame,
)

log = logging.getLogger(__name__)

R = TypeVar("R")

FATAL_CLOSE_CODES = {
    CLOSE_BAD_KEY: "the oracle refused the key",
    CLOSE_BANNED: "the oracle has banned this scout",
    CLOSE_TOKENIZER_MISMATCH: "the draft model's tokenizer does not match the oracle's",
    CLOSE_PROTOCOL_ERROR: "the oracle refused the handshake",
}


class ScoutRefused(Exception):
    """The oracle refused this scout for a reason retrying cannot fix."""


def websocket_url(oracle: str) -> str:
    """http(s)://host:port[/v1] -> ws(s)://host:port/scouts/connect."""
    parts = urlsplit(oracle if "://" in oracle else f"http://{oracle}")
    scheme = {"https": "wss", "wss": "wss"}.get(parts.scheme, "ws")
    path = parts.path.rstrip("/")
    path = path[: -len("/v1")] if path.endswith("/v1") else path
    return urlunsplit((scheme, parts.netloc, f"{path}/scouts/connect", "", ""))


STREAM_BATCH = 4
"""Draft tokens a scout streams per frame (fewer when it has nothing left to draft): a frame
per token would cost the oracle's event loop more than the token is worth."""


@dataclass
class _Pending:
    work: Work
    received: float


@dataclass
class _Answer:
    position: int
    k: int
    sent: int
    answered: bool = True
    """False while the answer is owed: nothing was drafted ahead yet, and it is sent with
    the first token drafted (or empty, when nothing can be drafted)."""


class Scout:
    def __init__(self, settings: ScoutSettings, model: DraftModel, local_threads: int = 0) -> None:
        self.settings = settings
        self.local_threads = local_threads
        """CPU threads it drafts with on the oracle's machine (0: elsewhere), said in hello."""
        self.model = model
        self.scout_id = settings.scout_id or f"{socket.gethostname()}-{random.randrange(16**6):06x}"
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="scout-model")
        self._pending: dict[str, _Pending] = {}
        self._wake = asyncio.Event()
        self._ahead = 16
        """How far past the decided tokens to draft when idle: the oracle's latest k."""
        self._answers: dict[str, _Answer] = {}
        """The latest answer per sequence, which later drafting streams more of."""
        self._tasks: set[asyncio.Task[None]] = set()
        """Sends and owed answers running alongside, held until they end."""

    async def run_forever(self) -> None:
        """Connect, serve, and reconnect with backoff; returns only on a fatal refusal."""
        backoff = 1.0
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except ScoutRefused:
                raise
            except (OSError, websockets.ConnectionClosed, ProtocolError, TimeoutError) as error:
                log.warning("scout %s: connection to the oracle lost: %s", self.scout_id, error)
            if time.monotonic() - started > 60:
                backoff = 1.0  # it had been up a while: start the backoff over
            delay = backoff * random.uniform(0.8, 1.2)
            log.info("scout %s: reconnecting in %.1f s", self.scout_id, delay)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, self.settings.reconnect_max_s)

    async def _session(self) -> None:
        url = websocket_url(self.settings.oracle)
        headers = {"Authorization": f"Bearer {self.settings.key or ''}"}
        async with websockets.connect(
            url, additional_headers=headers, max_size=MAX_ORACLE_FRAME_BYTES, open_timeout=20
        ) as connection:
            try:
                await self._handshake(connection)
                await self._serve(connection)
            except websockets.ConnectionClosed as closed:
                if closed.rcvd is not None and closed.rcvd.code in FATAL_CLOSE_CODES:
                    code, reason = closed.rcvd.code, closed.rcvd.reason
                    raise ScoutRefused(f"{FATAL_CLOSE_CODES[code]} ({code}): {reason}") from None
                raise

    async def _handshake(self, connection: ClientConnection) -> None:
        hello = Hello(
            version=PROTOCOL_VERSION,
            scout_id=self.scout_id,
            tokenizer=self.model.fingerprint,
            draft_model=self.settings.draft_model.name if self.settings.draft_model else "",
            local_threads=self.local_threads or None,
        )
        await connection.send(encode(hello))
        frame = parse_oracle_frame(str(await asyncio.wait_for(connection.recv(), 30)))
        if not isinstance(frame, Welcome):
            raise ProtocolError(f"expected welcome, got {frame.type}")
        if frame.version != PROTOCOL_VERSION:
            await connection.close(CLOSE_PROTOCOL_ERROR, "protocol version mismatch")
            raise ScoutRefused(
                f"the oracle speaks protocol {frame.version}, not {PROTOCOL_VERSION}"
            )
        if frame.tokenizer != self.model.fingerprint:
            reason = "tokenizer mismatch: the oracle's model has another tokenizer"
            await connection.close(CLOSE_TOKENIZER_MISMATCH, reason)
            raise ScoutRefused(reason)
        log.info("scout %s: joined the oracle serving %s", self.scout_id, frame.model)

    async def _serve(self, connection: ClientConnection) -> None:
        worker = asyncio.create_task(self._draft_forever(connection))
        try:
            async for message in connection:
                frame = parse_oracle_frame(str(message))
                if isinstance(frame, Work):
                    self._queue(frame)
                elif isinstance(frame, Cancel):
                    self._pending.pop(frame.seq, None)
                    self._answers.pop(frame.seq, None)
                    self.model.forget(frame.seq)
                elif isinstance(frame, Ping):
                    await connection.send(encode(Pong(nonce=frame.nonce)))
        finally:
            worker.cancel()
            self._pending.clear()
            self._answers.clear()

    def _queue(self, work: Work) -> None:
        """Keep the newest work per sequence, merging token deltas that follow on."""
        self._ahead = work.k
        earlier = self._pending.get(work.seq)
        if earlier is not None and work.position == earlier.work.position + len(
            earlier.work.tokens
        ):
            merged = earlier.work.tokens + work.tokens
            work = work.model_copy(update={"position": earlier.work.position, "tokens": merged})
        self._pending[work.seq] = _Pending(work, time.monotonic())
        self._wake.set()

    async def _draft_forever(self, connection: ClientConnection) -> None:
        """Answer the newest work of each sequence; with none waiting, draft one more token
        ahead of what the oracle decided and stream it (protocol 2), so the oracle has it
        before its next step and the next work is answered at once."""
        while True:
            while self._pending:
                key = next(iter(self._pending))
                pending = self._pending.pop(key)
                await self._answer(connection, pending)
            self._wake.clear()
            if self._pending:
                continue
            if self.settings.hostile != "random":  # corrupt drafts ahead too, to be verified
                extended = await self._on_model(self.model.run_ahead, self._ahead, self._owed)
                if extended is not None:
                    await self._stream(connection, extended, STREAM_BATCH)
                    continue
                for key in list(self._answers):  # nothing left to draft: send what is held
                    await self._stream(connection, key, 0)
            await self._wake.wait()

    async def _stream(self, connection: ClientConnection, key: str, batch: int) -> None:
        """Send the sequence's latest answer again with the tokens drafted since, once there
        are `batch` of them (or the answer is complete); an owed answer goes with its first
        token, or with none when `batch` is 0 (nothing can be drafted)."""
        answer = self._answers.get(key)
        if answer is None or key in self._pending or answer.sent >= answer.k:
            return
        start, ahead = self.model.ahead(key)
        tokens = ahead[: answer.k]
        if start != answer.position or (answer.answered and len(tokens) <= answer.sent):
            return
        if not answer.answered:
            batch = min(batch, 1)
        if len(tokens) - answer.sent < batch and len(tokens) < answer.k:
            return
        answer.sent, answer.answered = len(tokens), True
        tokens = self._corrupted(start, tokens)
        await self._send(connection, encode(Draft(seq=key, position=start, tokens=tokens)))

    async def _answer(self, connection: ClientConnection, pending: _Pending) -> None:
        work = pending.work
        late = time.monotonic() - pending.received > work.deadline_ms / 1000
        try:
            if late or self.settings.hostile == "random":  # keep the state in step only
                start = self.model.sync(work.seq, work.position, work.tokens)
                tokens: list[int] = []
            else:  # answer at once from what is drafted ahead (no wait for the model thread)
                start, tokens = self.model.answer(work.seq, work.position, work.tokens, work.k)
                answer = _Answer(start, work.k, len(tokens), answered=bool(tokens or self._owed))
                self._answers[work.seq] = answer  # then stream
                if not answer.answered:  # owed: sent with its first token, a prediction
                    self._later(self._answer_empty_by(connection, pending, answer))
                    return
        except NeedsResync:
            await connection.send(encode(Resync(seq=work.seq)))
            return
        if self.settings.hostile == "random" and not late:
            tokens = [random.randrange(self.model.n_vocab) for _ in range(work.k)]
        tokens = self._corrupted(start, tokens)
        await self._send(connection, encode(Draft(seq=work.seq, position=start, tokens=tokens)))

    @property
    def _owed(self) -> set[str]:
        """The sequences whose answer is owed: at most one, since the oracle sends an owed
        sequence no news until its token, and with several owed a scout behind on them all
        would draft each on stale tokens (measured: far fewer drafts verified, 4 sequences
        on 2 shared cores)."""
        return {key for key, answer in self._answers.items() if not answer.answered}

    async def _answer_empty_by(
        self, connection: ClientConnection, pending: _Pending, owed: _Answer
    ) -> None:
        """Send an owed answer empty when half its deadline (from when the work arrived)
        passed with no token drafted (a long prompt to read first, a slow machine): an
        answer in time, never a miss."""
        work = pending.work
        half_deadline = pending.received + work.deadline_ms / 2000
        await asyncio.sleep(max(0.0, half_deadline - time.monotonic()))
        if self._answers.get(work.seq) is not owed or owed.answered or work.seq in self._pending:
            return
        owed.answered = True
        empty = Draft(seq=work.seq, position=owed.position, tokens=[])
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._send(connection, encode(empty))

    def _corrupted(self, start: int, tokens: list[int]) -> list[int]:
        """`--hostile corrupt`: every fourth position's token made wrong, the same in every
        frame that covers it, so streamed frames still extend each other; others: as is."""
        if self.settings.hostile != "corrupt":
            return tokens
        n_vocab = self.model.n_vocab
        return [
            (token + 1) % n_vocab if (start + offset) % 4 == 3 else token
            for offset, token in enumerate(tokens)
        ]

    async def _send(self, connection: ClientConnection, draft: str) -> None:
        if self.settings.added_latency_ms:
            self._later(self._send_later(connection, draft))
        else:
            await connection.send(draft)

    def _later(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run it alongside, holding the task until it ends."""
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_later(self, connection: ClientConnection, text: str) -> None:
        await asyncio.sleep(self.settings.added_latency_ms / 1000)
        with contextlib.suppress(websockets.ConnectionClosed):
            await connection.send(text)

    async def _on_model(self, function: Callable[..., R], *args: Any) -> R:
        """Run a model call on the one thread that owns the draft model."""
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, function, *args)


def run_scout(settings: ScoutSettings) -> None:
    """Load the draft model, then serve the oracle until refused (exit status 2)."""
    from shard.default_model import default_model_path

    path = settings.draft_model or default_model_path()
    settings = settings.model_copy(update={"draft_model": path})  # its name goes in hello
    placement = place(
        settings.oracle, settings.threads, os.cpu_count() or 1, settings.idle_priority
    )
    if placement.too_small:
        log.error("scout: not starting: %s", placement.advice)
        raise SystemExit(2)
    if placement.advice:
        log.warning("scout: %s", placement.advice)
    if placement.idle_priority:
        yield_to_the_oracle()
    gpu = GpuOffload(settings.n_gpu_layers, settings.main_gpu)
    model = DraftModel(path, settings.n_ctx, settings.slots, placement.threads, gpu)
    scout = Scout(settings, model, placement.threads if placement.local else 0)
    log.info("scout %s: draft model %s, oracle %s", scout.scout_id, path, settings.oracle)
    try:
        asyncio.run(scout.run_forever())
    except ScoutRefused as refusal:
        log.error("scout %s: %s", scout.scout_id, refusal)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass
    finally:
        model.close()
