"""Real `manage.py run_recorder` processes: SIGKILL mid-batch, SIGTERM, a PostgreSQL outage.

Rows are appended as the worker appends them (`HistoryLog`), from a thread at a steady rate, so
the recorder is tested against a stream that keeps flowing while it dies or PostgreSQL is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import redis.asyncio as aioredis
from django.db import connection
from psycopg import sql

from aggregation.history_log import HistoryLog
from history.stream_group import GROUP
from shared.keys import RedisNames
from support.processes import ManagedProcess, scratch_database, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]


class Publisher(threading.Thread):
    """Appends `rate` market-data rows a second to the stream until stopped, as the worker does."""

    FLUSH_S = 0.05  # the worker's own flush period

    def __init__(self, redis_url: str, stream: str, *, rate: int) -> None:
        super().__init__(daemon=True)
        self.redis_url = redis_url
        self.stream = stream
        self.rate = rate
        self.appended = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._publish())
        except BaseException as exc:  # reported by stop(), in the test's thread
            self.error = exc

    async def _publish(self) -> None:
        client = aioredis.Redis.from_url(self.redis_url)
        lease = f"{self.stream}:writer"  # the fence: appends go in while this holds our id
        await client.set(lease, "test-writer")
        log = HistoryLog(
            client, stream=self.stream, capacity=1_000_000, leader_key=lease, owner="test-writer"
        )
        started = time.monotonic()
        made = 0
        try:
            while not self._halt.is_set():
                due = int((time.monotonic() - started) * self.rate)
                for n in range(made, due):
                    price = 100.0 + n / 1000
                    log.record("market_data", n + 1, {"symbol": f"S{n % 5}", "last_price": price})
                made = max(made, due)
                await log.flush()
                self.appended, self.dropped = log.appended, log.dropped
                await asyncio.sleep(self.FLUSH_S)  # pacing the rate, not waiting for a condition
            await log.flush()
            self.appended, self.dropped = log.appended, log.dropped
        finally:
            await client.aclose()

    def stop(self) -> int:
        """Stop appending; return how many rows were appended (none may have been dropped)."""
        self._halt.set()
        self.join(timeout=10)
        assert not self.is_alive()
        assert self.error is None, self.error
        assert self.dropped == 0
        return self.appended


def count_rows(dsn: str) -> int:
    """Rows in the tick table, through a connection of its own (the recorder's commits)."""
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*), count(DISTINCT seq) FROM history_markettick")
            total, distinct = row.fetchone() or (0, 0)
    except psycopg.OperationalError:
        return -1
    assert total == distinct, "a row was recorded twice"
    return int(total)


def recorder_env(redis_url: str, prefix: str, dsn: str) -> dict[str, str]:
    return {
        "DASHBOARD_SECRET_KEY": "test",
        "DASHBOARD_REDIS_URL": redis_url,
        "DASHBOARD_REDIS_KEY_PREFIX": prefix,
        "DASHBOARD_DATABASE_URL": dsn,
        "DASHBOARD_HISTORY_CLAIM_IDLE_S": "1",
        "DASHBOARD_HISTORY_BATCH_SIZE": "500",
        "DASHBOARD_HISTORY_READ_BLOCK_MS": "100",
        "DASHBOARD_RECORDER_METRICS_PORT": "0",
    }


def start_recorder(env: dict[str, str], tmp_path: Path, name: str) -> ManagedProcess:
    return ManagedProcess(["run_recorder"], env=env, log_path=tmp_path / f"{name}.log")


@pytest.fixture
def prefix(key_prefix: str, redis_client: redis.Redis) -> str:
    return key_prefix.rstrip(":")


@pytest.fixture
def test_dsn(transactional_db: None) -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def test_sigkill_mid_batch_then_restart_loses_and_duplicates_nothing(
    redis_url: str, prefix: str, test_dsn: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    stream = RedisNames(prefix).history_stream
    env = recorder_env(redis_url, prefix, test_dsn)
    publisher = Publisher(redis_url, stream, rate=2000)
    first = start_recorder(env, tmp_path, "first")
    second: ManagedProcess | None = None
    try:
        # given rows flowing and being recorded
        publisher.start()
        wait_until(lambda: count_rows(test_dsn) > 1000, timeout=30, what="rows recorded")
        # when the recorder is killed in the middle of a batch: the tick table is locked, so
        # its INSERT waits, holding a batch read from the stream and not acknowledged
        with psycopg.connect(test_dsn) as blocker, psycopg.connect(test_dsn) as watcher:
            watcher.autocommit = True  # pg_stat_activity is a snapshot per transaction
            blocker.execute("LOCK TABLE history_markettick IN EXCLUSIVE MODE")
            wait_until(lambda: blocked_recorders(watcher), timeout=10, what="a batch in flight")
            first.kill()
            blocker.rollback()
        pending = redis_client.xpending(stream, GROUP)
        assert pending["pending"] > 0
        # and a new recorder starts while rows keep flowing
        second = start_recorder(env, tmp_path, "second")
        wait_until(lambda: "reclaimed pending entries" in second.output(), timeout=30,
                   what="the dead recorder's entries reclaimed")  # fmt: skip
        appended = publisher.stop()
        # then every row is in the table exactly once, and the stream holds nothing
        wait_until(lambda: count_rows(test_dsn) == appended, timeout=30, what="every row")
        wait_until(lambda: redis_client.xlen(stream) == 0, timeout=10, what="the stream trimmed")
        assert redis_client.xpending(stream, GROUP)["pending"] == 0
    finally:
        with contextlib.suppress(AssertionError):
            publisher.stop()
        first.terminate()
        if second is not None:
            second.terminate()


def blocked_recorders(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = 'dashboard-recorder' AND wait_event_type = 'Lock' "
        "AND datname = current_database()"
    ).fetchone()
    return bool(row and row[0])


def test_sigterm_finishes_the_batch_and_exits_within_10_s(
    redis_url: str, prefix: str, test_dsn: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    stream = RedisNames(prefix).history_stream
    publisher = Publisher(redis_url, stream, rate=2000)
    recorder = start_recorder(recorder_env(redis_url, prefix, test_dsn), tmp_path, "only")
    try:
        publisher.start()
        wait_until(lambda: count_rows(test_dsn) > 500, timeout=30, what="rows recorded")
        started = time.monotonic()
        code = recorder.terminate(timeout=15)
        elapsed = time.monotonic() - started
        appended = publisher.stop()
    finally:
        with contextlib.suppress(AssertionError):
            publisher.stop()
        recorder.terminate()
    assert code == 0, recorder.output()[-2000:]
    assert elapsed < 10.0
    assert "recorder stopped" in recorder.output()
    # nothing it read is left unacknowledged: the stream holds exactly what is not in the table
    assert redis_client.xpending(stream, GROUP)["pending"] == 0
    assert count_rows(test_dsn) + redis_client.xlen(stream) == appended
    # it left the group, so readiness does not take it for a recorder that died
    assert redis_client.xinfo_consumers(stream, GROUP) == []


OUTAGE_S = 60  # the scenario: PostgreSQL gone for 60 s while ticks flow at 1,000/s
RATE = 1000


@pytest.fixture
def outage_db(tmp_path: Path) -> Iterator[str]:
    """A database of its own (the outage must not touch the suite's), migrated, then dropped."""
    name = f"history_outage_{uuid.uuid4().hex[:8]}"
    db = connection.settings_dict
    server = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}"
    with scratch_database(server, name) as dsn:
        try:
            migrate = ManagedProcess(
                ["migrate", "history", "--no-input"],
                env={"DASHBOARD_SECRET_KEY": "test", "DASHBOARD_DATABASE_URL": dsn},
                log_path=tmp_path / "migrate.log",
            )
            assert migrate.process.wait(timeout=60) == 0, migrate.output()
            migrate.terminate()
            yield dsn
        finally:  # a test may have left connections refused; the drop needs them allowed
            with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                allow_connections(admin, name, allowed=True)


def allow_connections(admin: psycopg.Connection[Any], name: str, *, allowed: bool) -> None:
    """Open or shut the database; shutting it also ends every session it has."""
    admin.execute(
        sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.Literal(allowed)
        )
    )
    if not allowed:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )


def test_postgresql_gone_for_60_s_while_ticks_flow_at_1000_per_s_loses_nothing(
    redis_url: str, prefix: str, outage_db: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    stream = RedisNames(prefix).history_stream
    name = outage_db.rsplit("/", 1)[1]
    admin_dsn = outage_db.rsplit("/", 1)[0] + "/postgres"
    recorder = start_recorder(recorder_env(redis_url, prefix, outage_db), tmp_path, "recorder")
    publisher = Publisher(redis_url, stream, rate=RATE)
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            # given ticks flowing at 1,000/s and being recorded
            publisher.start()
            wait_until(lambda: count_rows(outage_db) > 2 * RATE, timeout=30, what="recording")
            # when PostgreSQL refuses the recorder for 60 s
            allow_connections(admin, name, allowed=False)
            outage_ends = time.monotonic() + OUTAGE_S
            backlog_at_start = redis_client.xlen(stream)

            def outage_over() -> bool:
                assert recorder.alive(), recorder.output()[-2000:]
                return time.monotonic() >= outage_ends

            wait_until(outage_over, timeout=OUTAGE_S + 10, what="the end of the outage")
            # then the stream absorbed the ticks: nothing was acknowledged meanwhile
            backlog = redis_client.xlen(stream)
            assert backlog - backlog_at_start >= (OUTAGE_S - 5) * RATE
            allow_connections(admin, name, allowed=True)
        # and once it is back, every tick is in the table, exactly once
        appended = publisher.stop()
        wait_until(lambda: count_rows(outage_db) == appended, timeout=60, what="every tick")
        wait_until(lambda: redis_client.xlen(stream) == 0, timeout=10, what="the stream trimmed")
    finally:
        with contextlib.suppress(AssertionError):
            publisher.stop()
        recorder.terminate()
    output = recorder.output()
    assert "PostgreSQL writes resumed" in output
    # the failure is logged once per interval (10 s), not once per retry
    assert output.count("cannot write history to PostgreSQL") <= OUTAGE_S // 10 + 2
    print(f"outage: {appended} ticks appended, backlog peaked at {backlog}, all recorded")
