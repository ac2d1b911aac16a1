"""The worker's and the recorder's metrics servers listen on loopback unless configured.

The image sets `bind_host` 0.0.0.0 for the web port; the metrics ports must not follow it.
A server bound to 0.0.0.0 answers on every loopback address, one bound to 127.0.0.1 only there,
which tells the two apart without leaving loopback.
"""

from __future__ import annotations

import socket

import pytest

from support.processes import free_port, wait_until
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (what the image sets; the servers stay on loopback here)
COMMANDS = {
    "run_aggregator": "DASHBOARD_WORKER_METRICS_PORT",
    "run_recorder": "DASHBOARD_RECORDER_METRICS_PORT",
}


def listens(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_metrics_listen_on_loopback_only_by_default(fresh_stack: Stack, command: str) -> None:
    port = free_port()
    process = fresh_stack.start(
        command, command, DASHBOARD_BIND_HOST=ALL_INTERFACES, **{COMMANDS[command]: str(port)}
    )
    wait_until(
        lambda: listens("127.0.0.1", port) or not process.alive(), timeout=60, what="metrics"
    )
    assert process.alive(), process.output()[-3000:]

    assert not listens("127.0.0.2", port)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_metrics_bind_host_opens_them_up(fresh_stack: Stack, command: str) -> None:
    port = free_port()
    process = fresh_stack.start(
        command,
        command,
        DASHBOARD_METRICS_BIND_HOST=ALL_INTERFACES,
        **{COMMANDS[command]: str(port)},
    )
    wait_until(
        lambda: listens("127.0.0.2", port) or not process.alive(), timeout=60, what="metrics"
    )
    assert process.alive(), process.output()[-3000:]
