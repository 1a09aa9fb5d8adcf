"""The oracle keeps an idle connection open longer than clients keep one in their pools
(httpx, under the OpenAI SDK, keeps them 5 s), so a client never sends a request on a
connection the server is closing at that moment. With uvicorn's 5 s default, a request 5 s
after the last failed in a run of the suite: "Server disconnected without sending a response"."""

import socket
import time
from urllib.parse import urlsplit

from tests.conftest import RunningOracle


def get_health(connection: socket.socket) -> bytes:
    """One keep-alive request; the response's status line once all of it is read."""
    connection.sendall(b"GET /health HTTP/1.1\r\nHost: oracle\r\n\r\n")
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
