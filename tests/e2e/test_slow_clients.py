"""Slow clients (slowloris) against a real web process: idle or half-sent request heads.

A client that connects and never finishes its request head must be closed within
`http_header_timeout_s`, whether it sends nothing, stops half-way or drips a byte at a time;
meanwhile and afterwards a normal request is served. Past `http_limit_concurrency` new HTTP
requests get 503 at once, and the slow connections stop counting once they are closed.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from support.processes import wait_until
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HEADER_TIMEOUT_S = 2
LIMIT = 40
HALF_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (EOF or reset), without waiting."""
    try:
        return sock.recv(1024, socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, TimeoutError):  # nothing to read yet (a socket with a timeout)
        return False
    except ConnectionError:
        return True


@contextlib.contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections: every other one silent, the rest stopped half-way through a head."""
    sockets = []
    try:
        for n in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if n % 2:
                sock.sendall(HALF_HEAD)
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


class Dripper(threading.Thread):
    """A client that sends its request head one byte every 200 ms, never finishing it."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.closed = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        head = HALF_HEAD + b"x" * 10_000
        for byte in head:
            if self._halt.wait(0.2):
                return
            try:
                self.sock.sendall(bytes([byte]))
            except OSError:
                self.closed.set()
                return
            if closed_by_server(self.sock):
                self.closed.set()
                return

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.sock.close()


@pytest.fixture
def web(fresh_stack: Stack) -> int:
    """A web process with a short header timeout and a small concurrency limit."""
    return fresh_stack.start_web(
        DASHBOARD_HTTP_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        DASHBOARD_HTTP_LIMIT_CONCURRENCY=str(LIMIT),
    )


def health(port: int) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code


def test_idle_and_half_sent_connections_are_closed_and_others_served(web: int) -> None:
    # given: slow clients, fewer than the limit, and one dripping a byte at a time
    dripper = Dripper(web)
    dripper.start()
    try:
        with idle_connections(web, LIMIT // 2) as sockets:
            opened = time.monotonic()
            # then: a normal request is served meanwhile
            assert health(web) == 200
            # and every slow one is closed by the server once its head is overdue
            wait_until(
                lambda: all(closed_by_server(s) for s in sockets),
                timeout=HEADER_TIMEOUT_S + 8,
                what="the server to close the idle connections",
            )
            assert time.monotonic() - opened >= HEADER_TIMEOUT_S - 0.5  # not closed at once
            assert dripper.closed.wait(HEADER_TIMEOUT_S + 8), "the dripping client is still open"
        assert health(web) == 200
    finally:
        dripper.stop()


def test_past_the_concurrency_limit_requests_get_503_until_slow_clients_are_gone(
    web: int,
) -> None:
    with idle_connections(web, LIMIT + 5) as sockets:
        assert health(web) == 503
        wait_until(
            lambda: all(closed_by_server(s) for s in sockets),
            timeout=HEADER_TIMEOUT_S + 8,
            what="the server to close the idle connections",
        )
        assert health(web) == 200
