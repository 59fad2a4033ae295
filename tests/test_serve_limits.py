"""`clvsync serve`'s limits, over real HTTP on loopback: request heads and connections."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from plugin.serving import free_port
from tests.test_compliance import cli_env

ROOT = Path(__file__).resolve().parent.parent
HELD_BODY_BYTES = 1000  # declared by a held request, which sends one byte of it


@contextlib.contextmanager
def serving(tmp_path: Path, **env: str) -> Iterator[int]:
    """`clvsync serve --no-jobs` in a process of its own, with `env` added to its environment;
    its loopback port once /healthz answers. Stopped when the block ends."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "plugin.cli", "serve", "--no-jobs", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, **cli_env(f"sqlite:///{tmp_path / 'serve.db'}"), **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not healthy(port):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "serve did not start:\n" + log.read_text()
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def status_of(connection: socket.socket) -> int:
    """The status code of the response that comes on `connection` (within its timeout)."""
    received = b""
    while b"\r\n" not in received:
        chunk = connection.recv(4096)
        assert chunk, f"connection closed without a response after {received!r}"
        received += chunk
    return int(received.split(b" ", 2)[1])


def send_all_it_takes(connection: socket.socket, data: bytes) -> None:
    """Send `data`, or as much of it as the server reads before it answers and closes."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        connection.sendall(data)


def held_request(port: int) -> socket.socket:
    """A connection whose webhook request has its head sent and its body not: the app waits for
    the body (10 s, then 408), so the request stays in progress until the test closes it."""
    connection = connect(port)
    connection.sendall(
        b"POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n{" % HELD_BODY_BYTES
    )
    return connection


def unanswered(connection: socket.socket, seconds: float = 0.5) -> bool:
    """Whether no response comes on `connection` within `seconds` (a refusal comes at once)."""
    connection.settimeout(seconds)
    try:
        connection.recv(1)  # a response's first byte, or b"" when the server closed it
    except TimeoutError:
        return True
    finally:
        connection.settimeout(10)
    return False


def test_serve_refuses_200000_headers_with_400_and_keeps_serving(tmp_path: Path) -> None:
    # given the app served with its default limits
    with serving(tmp_path) as port:
        # when a request comes with 200,000 headers (2.7 MB), as the audit sent
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        head += b"".join(b"X-H%d: v\r\n" % i for i in range(200_000)) + b"\r\n"
        with connect(port) as connection:
            send_all_it_takes(connection, head)
            # then it is refused with uvicorn's 400, without the rest being read
            assert status_of(connection) == 400
        # and the server goes on answering
        assert healthy(port)


def test_serve_refuses_a_head_past_the_configured_limit_and_takes_one_within(
    tmp_path: Path,
) -> None:
    # given the app served with heads limited to 4 KiB
    with serving(tmp_path, CLVSYNC_MAX_HEADER_BYTES="4096") as port:
        # when 8 KiB of a head come without its end
        with connect(port) as connection:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 8192)
            # then it is refused at once, without waiting for the rest
            assert status_of(connection) == 400
        # and a head of 3 KiB is taken
        padded = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Pad": "a" * 3072})
        assert padded.status_code == 200


def test_serve_answers_503_past_the_connection_limit_and_serves_again_once_they_close(
    tmp_path: Path,
) -> None:
    # given the app served with at most 3 connections, and 3 requests held in progress
    with serving(tmp_path, CLVSYNC_MAX_CONNECTIONS="3") as port:
        held = [held_request(port) for _ in range(3)]
        try:
            # (each of the 3 taken, none refused)
            assert all(unanswered(connection) for connection in held)
            # when a fourth connection asks, for a page or for a websocket
            with connect(port) as connection:
                connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                asked = status_of(connection)
            with connect(port) as connection:
                connection.sendall(
                    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
                    b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                )
                upgrade = status_of(connection)
            # then both are refused with 503, which Shopify retries
            assert (asked, upgrade) == (503, 503)
        finally:
            for connection in held:
                connection.close()
        # and once the held connections are closed, requests are served again
        deadline = time.monotonic() + 10
        while not healthy(port):
            assert time.monotonic() < deadline, "still refused after the connections closed"
            time.sleep(0.1)
