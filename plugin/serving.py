"""Running an ASGI app under uvicorn on a socket bound first: in a background thread on
loopback, or in the foreground. Binding before anything else starts makes a port already in use
one clear error before the app's background work (processor, scheduler) has begun."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

# a request head's time limit, as long as a webhook's body may take (Settings.webhook_read_seconds)
HEAD_READ_SECONDS = 10.0


class ListenError(Exception):
    """A server cannot listen where it was asked to; the message says where and why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) as uvicorn binds its own (port 0: any free one), to
    hand to `run_server` or `serve_in_thread`; ListenError if the port is taken or refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"port {port} on {host} is already in use") from None
        raise ListenError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    except OverflowError:  # a port past 65535: the socket module's own range check
        sock.close()
        raise ListenError(f"cannot listen on {host} port {port}: ports go up to 65535") from None
    sock.set_inheritable(True)
    return sock


class HeadTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head has not all come within
    `head_seconds`: counted from the connection's opening for its first request, and for each
    later one from when its first byte is read (until then uvicorn's keep-alive timeout, 5 s,
    closes an idle connection after a response). uvicorn itself waits for a head forever, so
    connections that send nothing, or a head a byte at a time, would hold every slot of
    `limit_concurrency` and have every other request refused.

    A connection that has sent nothing of its head is closed without a word, as uvicorn closes
    an idle keep-alive one: a client that opened it ahead of a request would take an unasked-for
    answer as that request's. One with part of a head is answered 408 with `Connection: close`
    (RFC 9110, 15.5.9), then closed, so that a slow client learns why (nginx, past its
    client_header_timeout, logs 408 and closes without a word). Either way `connection_lost`
    follows, which frees the connection's slot in `limit_concurrency`.

    Relies on these parts of uvicorn 0.54's H11Protocol, not all of them documented:
    `connection_made`, `data_received` (which feeds the bytes to h11 and handles every event
    they complete), `on_response_complete` (which, keeping the connection, starts h11's next
    cycle and handles bytes already read of the next request), `connection_lost`, and its
    attributes `conn` (the h11.Connection), `transport`, `loop` and `logger`. Whether a head
    is awaited is read from h11's public state: the client's side IDLE means no Request yet."""

    head_seconds: float = HEAD_READ_SECONDS
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.head_seconds, self._head_timed_out)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._time_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.trailing_data[0]:  # part of a pipelined next head, read already
            self._time_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _time_head(self) -> None:
        """Run the head's timer while the client's head is incomplete (kept, not restarted, as
        more of it comes); stop it once the head is whole or the connection is closing."""
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            self._stop_head_timer()
        elif self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_seconds, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.conn.trailing_data[0] and self.conn.our_state is h11.IDLE:
            self.logger.info("Request head incomplete after %g s: answered 408.", self.head_seconds)
            self.transport.write(self._timeout_response())
        self.transport.close()

    def _timeout_response(self) -> bytes:
        """408 with `Connection: close`, through h11 (whose server may send a Response before
        any Request has come)."""
        body = f"Request head not received within {self.head_seconds:g} s\n".encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        response = h11.Response(status_code=408, headers=headers, reason=b"Request Timeout")
        return b"".join(
            (
                self.conn.send(response),
                self.conn.send(h11.Data(data=body)),
                self.conn.send(h11.EndOfMessage()),
            )
        )


def limits(
    max_connections: int, max_header_bytes: int, head_seconds: float = HEAD_READ_SECONDS
) -> dict[str, Any]:
    """uvicorn.Config options that bound what any client can make the server hold before the
    app has verified anything: `max_connections` open at once, idle keep-alive ones included,
    and as many requests in progress (a request past either is answered 503, which Shopify
    retries); a request head (request line and headers) is refused with 400 once
    `max_header_bytes` of it have come without its end, and the connection closed once
    `head_seconds` have passed without its end (see HeadTimeoutProtocol).

    uvicorn's default HTTP parser, httptools, reads a head of any size (200,000 headers were
    taken): h11 is the one that stops. It checks whenever it needs more data, so a head that
    arrives whole in one read of the socket (at most 256 KiB) is taken even past the limit."""
    protocol = type("HeadTimeoutProtocol", (HeadTimeoutProtocol,), {"head_seconds": head_seconds})
    return {
        "http": protocol,
        "h11_max_incomplete_event_size": max_header_bytes,
        # uvicorn counts the connection that asks too: N + 1 serves N at once, refuses the next
        "limit_concurrency": max_connections + 1,
        # the app serves no websockets, and an upgrade request would go past the limit
        "ws": "none",
    }


def run_server(app: ASGIApp, sock: socket.socket, **config: Any) -> None:
    """Serve `app` under uvicorn on the bound `sock` until interrupted (uvicorn.Config options
    in `config`)."""
    server = uvicorn.Server(uvicorn.Config(app, **config))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


@contextmanager
def serve_in_thread(
    app: ASGIApp, port: int | None = None, *, sock: socket.socket | None = None, **config: Any
) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 until the block ends, on `sock` if given, else on `port` (a free
    one unless given), with uvicorn.Config options in `config`; its base URL. ListenError if the
    port is in use."""
    sock = sock or listen("127.0.0.1", port or 0)
    port = int(sock.getsockname()[1])
    config = {"log_level": "warning", "lifespan": "on", **config}
    server = uvicorn.Server(uvicorn.Config(app, **config))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    try:
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                server.should_exit = True
                raise RuntimeError(f"the server on port {port} did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
