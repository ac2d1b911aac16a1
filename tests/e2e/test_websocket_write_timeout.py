"""A client that stops reading is closed once its writes stall for `ws_write_timeout_s`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from urllib.request import urlopen

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.processes import wait_until
from tests.e2e.stack import Stack, connect, receive
from tests.e2e.test_websocket import tick

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WRITE_TIMEOUT_S = 2.0


def server_side(port: int, client_port: int) -> list[str]:
    """The web process's TCP socket to the client at `client_port`, as `ss` lists it (or none)."""
    out = subprocess.run(
        ["ss", "-tnH", "state", "all", f"( sport = :{port} and dport = :{client_port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


def send_queue(port: int, client_port: int) -> int:
    """Bytes the server's kernel holds unsent for that socket (ss's Send-Q), 0 if none."""
    lines = server_side(port, client_port)
    return int(lines[0].split()[2]) if lines else 0


def metric(port: int, family_name: str, **labels: str) -> float:
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == family_name:
            return sum(
                sample.value
                for sample in family.samples
                if not sample.name.endswith("_created")
                and all(sample.labels.get(k) == v for k, v in labels.items())
            )
    raise AssertionError(f"{family_name} missing")


async def test_a_client_that_stops_reading_is_closed_after_the_write_timeout(
    fresh_stack: Stack,
) -> None:
    # given a 2 s write timeout, and a state that changes fast in big records
    stack = fresh_stack
    stack.start_worker()
    port = stack.start_web(DASHBOARD_WS_WRITE_TIMEOUT_S=str(WRITE_TIMEOUT_S))
    pad = "w" * 16_000
    # a peer that completes the handshake with a small receive buffer and never reads again
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    client_port = sock.getsockname()[1]
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(
            f"GET /ws?type=tui&token={stack.token} HTTP/1.1\r\n".encode()
            + f"Host: 127.0.0.1:{port}\r\n".encode()
            + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        # (the reader's stream takes up to 64 KiB more from the socket, then reads no more)
        async with connect(stack.ws_url(type="tui", channels="market_data:POLITE")) as polite:
            await receive(polite)
            wait_until(
                lambda: metric(port, "dashboard_active_connections") == 2,
                timeout=5,
                what="both clients connected",
            )
            # when updates far bigger than the buffers keep coming
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WRITE_TIMEOUT_S + 20
            stalled_at: float | None = None
            closed_at: float | None = None
            wave = 0
            while loop.time() < deadline:
                wave += 1
                for i in range(10):
                    stack.publish(
                        "market_data",
                        f"W{i}",
                        {"symbol": f"W{i}", "last_price": wave, "pad": pad + str(wave)},
                    )
                if stalled_at is None and send_queue(port, client_port) > 0:
                    stalled_at = loop.time()  # the server's kernel holds bytes the peer won't take
                if not server_side(port, client_port):
                    closed_at = loop.time()
                    break
                await asyncio.sleep(0.05)
            # then the server dropped the connection (its TCP socket is gone, buffers and all)
            # within the write timeout and a few seconds of the stall
            assert stalled_at is not None
            assert closed_at is not None, "the non-reading client is still connected"
            print(f"stall to close: {closed_at - stalled_at:.2f} s (timeout {WRITE_TIMEOUT_S} s)")
            assert closed_at - stalled_at < WRITE_TIMEOUT_S + 5
            # counted, and no longer among the process's connections
            assert metric(port, "dashboard_ws_bounds", bound="write_timeout") == 1
            assert metric(port, "dashboard_active_connections") == 1
            # while the polite client on the same process keeps receiving its updates
            for price in (1.0, 2.0, 3.0):
                tick(stack, "POLITE", price)
                ends = time.monotonic() + 5
                while True:
                    frame = await receive(polite, timeout=max(0.1, ends - time.monotonic()))
                    changes = frame.get("changes", {})
                    whole = changes.get("market_data.POLITE") or {}  # its first tick: new
                    if price in (
                        changes.get("market_data.POLITE.last_price"),
                        whole.get("last_price"),
                    ):
                        break
    finally:
        writer.close()
        with contextlib.suppress(OSError):  # reset by the server: what the test expects
            await writer.wait_closed()
