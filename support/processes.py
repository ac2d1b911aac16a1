"""Starting the product's real processes in tests, and stopping every one of them afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def isolated_env(*, prefix: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a deployment of its own on a shared Redis (plus `extra`).

    Its own key prefix and input channels (pub/sub is not scoped by database number), no
    metrics ports to collide on, and each backend on a loopback port of its own where nothing
    listens unless the test's simulator serves it.
    """
    return {
        "DASHBOARD_SECRET_KEY": "test-only-secret-key",
        "DASHBOARD_REDIS_URL": redis_url,
        "DASHBOARD_REDIS_KEY_PREFIX": prefix,
        "DASHBOARD_INPUT_PREFIX": f"{prefix}:",
        "DASHBOARD_WORKER_METRICS_PORT": "0",
        "DASHBOARD_RECORDER_METRICS_PORT": "0",
        "DASHBOARD_ORDER_SERVICE_GRPC": f"127.0.0.1:{free_port()}",
        "DASHBOARD_ACCOUNT_SERVICE_GRPC": f"127.0.0.1:{free_port()}",
        "DASHBOARD_STRATEGY_SERVICE_HTTP": f"http://127.0.0.1:{free_port()}",
        **extra,
    }


@contextlib.contextmanager
def scratch_database(server: str, name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on `server` (postgres://user@host:port); its URL.

    Dropped on exit, whatever connections are still open to it.
    """
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def run_command(args: list[str], *, env: dict[str, str], timeout: float = 120) -> str:
    """Run `manage.py args` to completion (PATH added to `env`); its stdout. Fails loudly."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"manage.py {args[0]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def issue_token(name: str, *options: str, env: dict[str, str]) -> str:
    """Issue an API token with `manage.py issue_token` in `env`'s database; its raw key."""
    return run_command(["issue_token", name, *options], env=env).strip().splitlines()[-1]


# Load generators open thousands of sockets from one address, far past the per-address limits
# meant for a desk; they lift them (the limits have their own tests).
UNLIMITED_CLIENTS_ENV = {
    "DASHBOARD_WS_MAX_CONNECTIONS_PER_IP": "1000000",
    "DASHBOARD_WS_MAX_CONNECTIONS_PER_TOKEN": "1000000",
    "DASHBOARD_WS_CONNECTS_PER_IP_PER_S": "1000000",
    "DASHBOARD_WS_CONNECTS_BURST": "1000000",
    "DASHBOARD_HTTP_LIMIT_CONCURRENCY": "0",  # WebSockets count against it
}


class ManagedProcess:
    """One `manage.py` command running in the background, its output in a log file."""

    def __init__(self, args: list[str], *, env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        full_env = {"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1", **env}
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def output(self) -> str:
        """Everything the process has written so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, then wait; SIGKILL if it overstays `timeout`. Returns the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if not self._log.closed:
            self._log.close()
        return int(self.process.returncode)
