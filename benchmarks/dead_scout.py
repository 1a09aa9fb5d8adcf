"""A scout that joins the swarm and then never answers: the worst a hung volunteer can do.

    python -m benchmarks.dead_scout --oracle http://127.0.0.1:PORT --key KEY

It performs the scout handshake (hello, then wait for welcome) and afterwards reads and drops
every frame, so the oracle keeps sending it work that never comes back. The websockets library
still answers WebSocket pings, as a hung process's network stack would keep the socket open.
"""

import argparse
import asyncio
import json
import sys
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

PROTOCOL_VERSION = 1


def connect_url(oracle: str) -> str:
    """ws(s)://host:port/scouts/connect for an http(s)://host:port oracle URL."""
    base = oracle.rstrip("/")
    for http, ws in (("https://", "wss://"), ("http://", "ws://")):
        if base.startswith(http):
            return ws + base[len(http) :] + "/scouts/connect"
    raise ValueError(f"oracle URL must start with http:// or https://, not {oracle!r}")


def hello(scout_id: str, fingerprint: str) -> dict[str, Any]:
    """The first frame a scout sends."""
    return {
        "type": "hello",
        "version": PROTOCOL_VERSION,
        "scout_id": scout_id,
        "tokenizer": fingerprint,
        "draft_model": "dead",
    }


async def tokenizer_fingerprint(oracle: str, key: str) -> str:
    """The oracle's tokenizer fingerprint from /system/status: a scout must present it."""
    async with httpx.AsyncClient(base_url=oracle, timeout=30.0) as http:
        response = await http.get("/system/status", headers={"Authorization": f"Bearer {key}"})
        response.raise_for_status()
        fingerprint = (response.json().get("model") or {}).get("tokenizer_fingerprint")
    if not fingerprint:
        raise RuntimeError("/system/status has no model.tokenizer_fingerprint")
    return str(fingerprint)


async def join(oracle: str, key: str, scout_id: str, timeout_s: float = 30.0) -> ClientConnection:
    """Connect and complete the handshake; raise if the oracle answers anything but welcome."""
    fingerprint = await tokenizer_fingerprint(oracle, key)
    websocket = await connect(
        connect_url(oracle), additional_headers={"Authorization": f"Bearer {key}"}
    )
    await websocket.send(json.dumps(hello(scout_id, fingerprint)))
    reply = json.loads(await asyncio.wait_for(websocket.recv(), timeout_s))
    if not isinstance(reply, dict) or reply.get("type") != "welcome":
        await websocket.close()
        raise RuntimeError(f"expected a welcome, got {json.dumps(reply)[:300]}")
    return websocket


async def play_dead(websocket: ClientConnection) -> int:
    """Read and drop every frame until the oracle closes the connection; frames dropped."""
    dropped = 0
    try:
        async for _ in websocket:
            dropped += 1
    except ConnectionClosed:
        pass  # closed abruptly: as over as a clean close
    return dropped


async def run(oracle: str, key: str, scout_id: str) -> None:
    """Join, then ignore everything; report how it ended."""
    websocket = await join(oracle, key, scout_id)
    print(f"dead scout {scout_id} joined {oracle}; ignoring all work", flush=True)
    dropped = await play_dead(websocket)
    print(
        f"connection closed after {dropped} ignored frames "
        f"(code {websocket.close_code}, reason {websocket.close_reason!r})",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dead_scout", description=__doc__)
    parser.add_argument("--oracle", required=True, help="the oracle's base URL, http://HOST:PORT")
    parser.add_argument("--key", required=True, help="API key the scout joins with")
    parser.add_argument("--scout-id", default="dead-scout", help="id to announce")
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args.oracle, args.key, args.scout_id))
    except (OSError, RuntimeError, ValueError, httpx.HTTPError, WebSocketException) as error:
        print(f"dead scout: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
