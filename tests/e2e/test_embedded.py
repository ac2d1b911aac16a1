"""`make run` on a machine without Redis or PostgreSQL: embedded servers from the dev wheels.

The whole product (web, worker, simulator, recorder under honcho, as `make run` starts it) runs
on private servers that `scripts/preflight.py` starts on free ports, so it never touches the
machine's 5432 or 6379; Ctrl-C stops everything, and a restart finds the recorded history.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from dashboard_project import embedded
from support.processes import ROOT, free_port, wait_until
from tests.e2e.stack import connect, receive

pytestmark = [pytest.mark.e2e, pytest.mark.embedded, pytest.mark.slow]

ANNOUNCED = re.compile(r"started an embedded (PostgreSQL|Valkey) [^\n]* at 127\.0\.0\.1:(\d+);")


def bare_env(data_dir: Path, web_port: int) -> dict[str, str]:
    """An environment with no store URL at all, as on a new user's machine, and `always`."""
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
        "DASHBOARD_SECRET_KEY": "test-only-secret-key",
        "DASHBOARD_EMBEDDED": "always",
        "DASHBOARD_EMBEDDED_DIR": str(data_dir),
        "DASHBOARD_PORT": str(web_port),
        "DASHBOARD_WORKER_METRICS_PORT": "0",
        "DASHBOARD_RECORDER_METRICS_PORT": "0",
        "DASHBOARD_ORDER_SERVICE_GRPC": f"127.0.0.1:{free_port()}",
        "DASHBOARD_ACCOUNT_SERVICE_GRPC": f"127.0.0.1:{free_port()}",
        "DASHBOARD_STRATEGY_SERVICE_HTTP": f"http://127.0.0.1:{free_port()}",
    }


def preflight(command: str, *, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """`scripts/preflight.py --create-database -- sh -c command`, as the Makefile runs it."""
    return subprocess.Popen(
        [sys.executable, "scripts/preflight.py", "--create-database", "--", "sh", "-c", command],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the test's Ctrl-C goes to it alone
    )


def get(port: int, path: str, token: str) -> tuple[int, dict[str, object]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def listens(port: int) -> bool:
    return embedded.listens(f"tcp://127.0.0.1:{port}")


async def test_make_run_on_embedded_servers_and_restart(tmp_path: Path) -> None:
    data_dir, token_file, web_port = tmp_path / "data", tmp_path / "token", free_port()
    env = bare_env(data_dir, web_port)
    log_path = tmp_path / "run.log"
    run = (
        "python manage.py migrate --no-input"
        f" && python manage.py issue_token smoke > {token_file}"
        " && exec honcho start -f Procfile"
    )
    with log_path.open("wb") as log:
        process = preflight(run, env=env, log=log)
        try:

            def up() -> bool:
                assert process.poll() is None, log_path.read_text()[-3000:]
                return token_file.is_file() and listens(web_port)

            wait_until(up, timeout=120, what="the product on embedded servers")
            output = log_path.read_text()
            servers = dict(ANNOUNCED.findall(output))
            assert set(servers) == {"PostgreSQL", "Valkey"}, output
            assert {"5432", "6379"}.isdisjoint(servers.values())
            token = token_file.read_text().strip().splitlines()[-1]

            # A tick of the simulator reaches a client.
            async with connect(
                f"ws://127.0.0.1:{web_port}/ws?type=web&format=json&token={token}"
            ) as ws:
                assert (await receive(ws, timeout=15))["type"] == "snapshot"
                while True:
                    frame = await receive(ws, timeout=15)
                    changes = frame.get("changes") or {}
                    if frame["type"] == "update" and any(
                        k.startswith("market_data.") for k in changes
                    ):
                        break

            # ... and the recorder writes it to the history.
            def recorded() -> int:
                status, body = get(web_port, "/api/v1/history?type=market_data&limit=5", token)
                assert status == 200, body
                return len(body["data"])  # type: ignore[arg-type]

            wait_until(recorded, timeout=30, what="history rows")
        finally:
            # Ctrl-C, as a terminal sends it to the whole foreground process group.
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
                raise
    output = log_path.read_text()
    for name, port in ANNOUNCED.findall(output):
        assert not listens(int(port)), f"embedded {name} still listens on {port}: {output[-3000:]}"
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    assert not (data_dir / "redis" / "valkey.pid").exists()

    # A restart uses the same data: the history recorded above is still there.
    count = tmp_path / "count"
    script = (
        "python manage.py shell -c "
        "'from history.models import MarketTick; print(MarketTick.objects.count())'"
        f" > {count}"
    )
    with (tmp_path / "restart.log").open("wb") as log:
        again = preflight(script, env=env, log=log)
        assert again.wait(timeout=120) == 0, (tmp_path / "restart.log").read_text()
    assert int(count.read_text().split()[-1]) > 0
