"""The oracle keeps an idle connection open longer than clients keep one in their pools
(httpx, under the OpenAI SDK, keeps them 5 s), so a client never sends a request on a
connection the server is closing at that moment. With uvicorn's 5 s default, a request 5 s
after the last failed in a run of the suite: "Server disconnected without sending a response"."""

import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from shard.api.errors import install_error_handlers
from tests.conftest import RunningOracle, free_port


def get_health(connection: socket.socket, path: str = "/health") -> bytes:
    """One keep-alive request; the response's status line once all of it is read."""
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: oracle\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(4096)
        if not chunk:
            return b"closed"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += connection.recv(4096)
    return head.split(b"\r\n")[0]


def test_an_idle_connection_outlives_a_client_pools_keep_alive(oracle: RunningOracle) -> None:
    address = urlsplit(oracle.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        assert get_health(connection) == b"HTTP/1.1 200 OK"
        time.sleep(6)  # idle past httpx's keep-alive expiry
        assert get_health(connection) == b"HTTP/1.1 200 OK"


@pytest.fixture
def failing_server() -> Iterator[int]:
    """An app wired for errors as the oracle is, with a route that fails unexpectedly."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    @app.get("/fails")
    async def fails() -> dict[str, str]:
        raise RuntimeError("a bug")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def test_a_connection_survives_an_unexpected_500(failing_server: int) -> None:
    """Starlette's handler for `Exception` answers, then raises again, and uvicorn closed the
    connection: a pooled client's next request on it was reset."""
    with socket.create_connection(("127.0.0.1", failing_server), timeout=10) as connection:
        assert get_health(connection, "/fails") == b"HTTP/1.1 500 Internal Server Error"
        assert get_health(connection) == b"HTTP/1.1 200 OK"
    error = httpx.get(f"http://127.0.0.1:{failing_server}/fails").json()["error"]
    assert error["type"] == "server_error" and error["code"] == "internal_error"


def test_a_client_leaving_mid_body_is_no_server_error(oracle: RunningOracle) -> None:
    """Flaky clients are common; each one was logged as an unhandled error, twice."""
    address = urlsplit(oracle.base_url)
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: oracle\r\nContent-Length: 100\r\n\r\n"
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(head + b'{"mo')
    time.sleep(0.5)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        assert get_health(connection) == b"HTTP/1.1 200 OK"
    assert "ClientDisconnect" not in oracle.log()
