"""History reads from a streaming replica (`database_replica_url`); access checks and writes
stay on the primary. Two private PostgreSQL 15 servers on loopback: a primary, and a replica
made of it with pg_basebackup (Debian's binaries, run as the postgres system user)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest

from history.services import history_rows_write, staging_create
from history.stream_rows import StreamRow
from support.processes import free_port, issue_token, run_command, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PG_BIN = Path("/usr/lib/postgresql/15/bin")
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _as_postgres(*args: str) -> None:
    command = [*args] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *args]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@contextlib.contextmanager
def _server(data: Path, port: int) -> Iterator[str]:
    """Start the cluster in `data` on 127.0.0.1:`port`; stop it (fast) on exit."""
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {data.parent}"
    _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                 str(data.parent / f"{data.name}.log"), "-w", "start")  # fmt: skip
    try:
        yield f"postgres://postgres@127.0.0.1:{port}"
    finally:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")


@pytest.fixture
def primary_and_replica() -> Iterator[tuple[str, str]]:
    """(primary URL, replica URL) of the database `dashboard`, migrated, replicated."""
    if not (PG_BIN / "pg_basebackup").exists():
        pytest.fail(f"PostgreSQL 15 binaries not found in {PG_BIN}")
    root = Path(tempfile.mkdtemp(prefix="history-replica-"))
    shutil.chown(root, "postgres", "postgres")
    try:
        primary_data, replica_data = root / "primary", root / "replica"
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(primary_data), "-U", "postgres",
                     "--auth=trust")  # fmt: skip
        with _server(primary_data, free_port()) as primary:
            with psycopg.connect(f"{primary}/postgres", autocommit=True) as admin:
                admin.execute("CREATE DATABASE dashboard")
            port = primary.rsplit(":", 1)[1]
            # `-c fast`: the default waits for a spread checkpoint, minutes on an idle server.
            _as_postgres(str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", port, "-U",
                         "postgres", "-D", str(replica_data), "-R", "-X", "stream",
                         "-c", "fast")  # fmt: skip
            with _server(replica_data, free_port()) as replica:
                yield f"{primary}/dashboard", f"{replica}/dashboard"
    finally:
        shutil.rmtree(root, ignore_errors=True)


_READ = """
import orjson
from django.test import Client
client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION="Bearer %s")
page = client.get("/api/v1/history", {"type": "market_data", "symbol": "X"})
export = client.get("/api/v1/history", {"type": "market_data", "format": "ndjson",
                    "from": "2026-05-01T00:00:00Z", "to": "2026-05-02T00:00:00Z"})
import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # a sync client reads an async body: Django says so
    body = b"".join(export)
print(orjson.dumps({"status": page.status_code, "page": [i["seq"] for i in page.json()["data"]],
                    "export": [orjson.loads(line)["seq"] for line in body.splitlines()]}).decode())
"""


def _tick(n: int) -> StreamRow:
    record = orjson.dumps({"symbol": "X", "last_price": float(n)}).decode()
    return StreamRow(1, n, "market_data", n, T0 + timedelta(seconds=n), record, f"fade-{n}")


def test_history_reads_the_replica_and_access_checks_the_primary(
    primary_and_replica: tuple[str, str], redis_url: str
) -> None:
    primary, replica = primary_and_replica
    env = {
        "DASHBOARD_SECRET_KEY": "test",
        "DASHBOARD_DATABASE_URL": primary,
        "DASHBOARD_DATABASE_REPLICA_URL": replica,
        "DASHBOARD_REDIS_URL": redis_url,
        "DASHBOARD_REDIS_KEY_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
    }
    run_command(["migrate", "--no-input"], env=env)
    # given ticks written on the primary and replayed on the replica
    with psycopg.connect(primary) as conn:
        staging_create(conn=conn)
        assert history_rows_write(conn=conn, rows=[_tick(1), _tick(2)]) == {"market_data": 2}
    with psycopg.connect(replica, autocommit=True) as standby:

        def replicated() -> bool:
            row = standby.execute("SELECT count(*) FROM history_markettick").fetchone()
            return row == (2,)

        wait_until(replicated, timeout=30, what="the ticks on the replica")
        # when the replica stops replaying, and a tick and a token are written meanwhile
        standby.execute("SELECT pg_wal_replay_pause()")
        with psycopg.connect(primary) as conn:
            staging_create(conn=conn)
            assert history_rows_write(conn=conn, rows=[_tick(3)]) == {"market_data": 1}
        key = issue_token("quant", "--channels", "market_data", env=env)
        # then the token is accepted (checked on the primary: the replica lacks it), and the
        # page and the export show the replica's rows (the third tick is not there yet)
        printed = run_command(["shell", "-c", _READ % key], env=env)
        got = orjson.loads(printed.strip().splitlines()[-1])
        assert got == {"status": 200, "page": [2, 1], "export": [1, 2]}
        standby.execute("SELECT pg_wal_replay_resume()")
