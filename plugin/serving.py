"""Running an ASGI app under uvicorn on a socket bound first: in a background thread on
loopback, or in the foreground. Binding before anything else starts makes a port already in use
one clear error before the app's background work (processor, scheduler) has begun."""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp


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


def limits(max_connections: int, max_header_bytes: int) -> dict[str, Any]:
    """uvicorn.Config options that bound what any client can make the server hold before the
    app has verified anything: `max_connections` open at once, idle keep-alive ones included,
    and as many requests in progress (a request past either is answered 503, which Shopify
    retries); a request head (request line and headers) is refused with 400 once
    `max_header_bytes` of it have come without its end.

    uvicorn's default HTTP parser, httptools, reads a head of any size (200,000 headers were
    taken): h11 is the one that stops. It checks whenever it needs more data, so a head that
    arrives whole in one read of the socket (at most 256 KiB) is taken even past the limit."""
    return {
        "http": "h11",
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
    app: ASGIApp, port: int | None = None, *, sock: socket.socket | None = None
) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 until the block ends, on `sock` if given, else on `port` (a free
    one unless given); its base URL. ListenError if the port is in use."""
    sock = sock or listen("127.0.0.1", port or 0)
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
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
