"""`clvsync serve`'s limits, over real HTTP on loopback: request heads and connections."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from plugin.serving import HEAD_READ_SECONDS, free_port, limits, serve_in_thread
from tests.test_compliance import cli_env

ROOT = Path(__file__).resolve().parent.parent
HELD_BODY_BYTES = 1000  # declared by a held request, which sends one byte of it
HEAD_SECONDS = 1.0  # the head's time limit where a test sets it
GET = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


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


async def _ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@contextlib.contextmanager
def serving_heads_within(seconds: float, max_connections: int = 100) -> Iterator[int]:
    """A one-route app (GET /healthz) in a thread, under `clvsync serve`'s limits with request
    heads limited to `seconds`; its loopback port. Stopped when the block ends."""
    app = Starlette(routes=[Route("/healthz", _ok)])
    config = limits(max_connections, 16384, head_seconds=seconds)
    with serve_in_thread(app, **config) as url:
        yield int(url.rsplit(":", 1)[1])


def until_closed(connection: socket.socket, seconds: float) -> bytes | None:
    """What the server sends on `connection` until it closes it; None if it is still open after
    `seconds`."""
    received, deadline = b"", time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        connection.settimeout(left)
        try:
            chunk = connection.recv(4096)
        except TimeoutError:
            break
        if not chunk:
            return received
        received += chunk
    return None


def response_of(connection: socket.socket) -> tuple[int, bytes]:
    """The status and body of the next response on `connection` (framed by Content-Length, as
    uvicorn frames the app's), within its timeout."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(4096)
        assert chunk, f"connection closed without a response after {received!r}"
        received += chunk
    head, body = received.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = connection.recv(4096)
        assert chunk, "connection closed within a response's body"
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def send_slowly(connection: socket.socket, data: bytes, seconds: float) -> None:
    """Send `data` in 4 pieces spread over `seconds`."""
    step = -(-len(data) // 4)
    for start in range(0, len(data), step):
        if start:
            time.sleep(seconds / 3)
        connection.sendall(data[start : start + step])


def test_serve_closes_a_connection_that_sends_nothing_once_the_head_time_is_up() -> None:
    # given the app served with heads limited to 1 s
    with serving_heads_within(HEAD_SECONDS) as port:
        # when a connection sends nothing
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            opened = time.monotonic()
            received = until_closed(connection, seconds=5)
            waited = time.monotonic() - opened
        # then the server closes it once the limit has passed, without a word
        assert received == b"", "the server kept a silent connection open for 5 s"
        assert HEAD_SECONDS - 0.05 <= waited < HEAD_SECONDS + 2


def test_serve_answers_408_to_a_head_sent_a_byte_at_a_time_past_the_head_time() -> None:
    # given the app served with heads limited to 1 s
    with serving_heads_within(HEAD_SECONDS) as port:
        # when a connection sends a head without its end, a byte every 50 ms (slowloris)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            opened = time.monotonic()
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            while (
                time.monotonic() - opened < 5 and not select.select([connection], [], [], 0.05)[0]
            ):
                connection.sendall(b"a")
            waited = time.monotonic() - opened
            received = until_closed(connection, seconds=1)
        # then once the limit has passed from its opening, it is answered 408 and closed
        assert received is not None, "the server kept a trickling head's connection open"
        assert received.startswith(b"HTTP/1.1 408 "), received
        assert b"connection: close" in received.lower()
        assert HEAD_SECONDS - 0.05 <= waited < HEAD_SECONDS + 2


def test_serve_answers_408_to_a_next_head_left_incomplete_after_a_response() -> None:
    # given the app served with heads limited to 1 s, and a request answered on a connection
    with serving_heads_within(HEAD_SECONDS) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            connection.sendall(GET)
            assert response_of(connection) == (200, b"ok")
            # when part of a second request's head comes, and no more
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            received = until_closed(connection, seconds=5)
        # then it is answered 408 and closed (uvicorn's keep-alive timeout stops on its first byte)
        assert received is not None, "the server kept a partial second head open for 5 s"
        assert received.startswith(b"HTTP/1.1 408 "), received


def test_serve_serves_again_once_silent_connections_holding_every_slot_time_out() -> None:
    # given the app served with at most 3 connections and heads limited to 1 s
    with serving_heads_within(HEAD_SECONDS, max_connections=3) as port:
        # when 3 connections are opened and send nothing
        silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        try:
            # (holding every slot: a request is refused meanwhile)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                connection.sendall(GET)
                assert response_of(connection)[0] == 503
            # then, the clients holding them still, the server closes them and serves again
            deadline = time.monotonic() + 5
            while not healthy(port):
                assert time.monotonic() < deadline, "still refused 5 s after the head limit"
                time.sleep(0.1)
            assert all(until_closed(held, seconds=1) == b"" for held in silent)
        finally:
            for held in silent:
                held.close()


def test_serve_takes_slow_heads_within_the_head_time_on_a_kept_connection() -> None:
    # given the app served with heads limited to 1 s
    with serving_heads_within(HEAD_SECONDS) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            # when a first head takes 0.4 s to come
            send_slowly(connection, GET, seconds=0.4)
            first = response_of(connection)
            # and, after 0.8 s idle, a second one takes 0.4 s (1.2 s after the response)
            time.sleep(0.8)
            send_slowly(connection, GET, seconds=0.4)
            second = response_of(connection)
            # and a third comes at once
            connection.sendall(GET)
            third = response_of(connection)
        # then all three are served on the one connection
        assert [first, second, third] == [(200, b"ok")] * 3


def test_serve_closes_silent_and_incomplete_heads_after_its_head_time(tmp_path: Path) -> None:
    # given `clvsync serve` with its default head time (10 s)
    with serving(tmp_path) as port:
        # when one connection sends nothing and another part of a head
        with connect(port) as silent, connect(port) as partial:
            opened = time.monotonic()
            partial.sendall(b"POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            from_silent = until_closed(silent, seconds=HEAD_READ_SECONDS + 5)
            waited = time.monotonic() - opened
            from_partial = until_closed(partial, seconds=1)
        # then both are closed once it has passed, the partial one answered 408
        assert from_silent == b"", "serve kept a silent connection open"
        assert HEAD_READ_SECONDS - 0.1 <= waited < HEAD_READ_SECONDS + 5
        assert from_partial is not None, "serve kept a partial head's connection open"
        assert from_partial.startswith(b"HTTP/1.1 408 "), from_partial
