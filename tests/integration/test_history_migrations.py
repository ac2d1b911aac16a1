"""History migrations on a populated database: rows logged before a migration survive it, and
the recorder's writes work on the migrated tables."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from django.db import connection

from history.services import history_rows_write, staging_create
from history.stream_rows import StreamRow
from support.processes import run_command, scratch_database

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LEGACY_TICKS = 10_000


def test_row_keys_are_added_to_a_populated_history() -> None:
    db = connection.settings_dict
    server = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}"
    with scratch_database(server, f"history_migrate_{uuid.uuid4().hex[:8]}") as dsn:
        env = {"DASHBOARD_SECRET_KEY": "test", "DASHBOARD_DATABASE_URL": dsn}
        # given a history written before row keys existed
        run_command(["migrate", "history", "0001", "--no-input"], env=env)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                """INSERT INTO history_markettick
                   (stream_ms, stream_seq, seq, received_at, time, record, symbol, last_price)
                   SELECT n, 0, n, now(), now(), '{"symbol": "OLD", "last_price": 1}', 'OLD', 1
                   FROM generate_series(1, %s) AS n""",
                [LEGACY_TICKS],
            )
        # when the history migrates
        run_command(["migrate", "history", "--no-input"], env=env)
        with psycopg.connect(dsn) as conn:
            # then every old row is there, without a row key
            counted = conn.execute(
                "SELECT count(*), count(row_key) FROM history_markettick"
            ).fetchone()
            assert counted == (LEGACY_TICKS, 0)
            # and new rows are written once each, even when the worker appended them twice
            now = datetime.now(UTC)
            record = '{"symbol": "NEW", "last_price": 2}'
            first = [StreamRow(10**13, i, "market_data", i, now, record, f"w-{i}") for i in (1, 2)]
            again = [
                StreamRow(10**13 + 1, i, "market_data", i, now, record, f"w-{i}") for i in (1, 2)
            ]
            staging_create(conn=conn)
            assert history_rows_write(conn=conn, rows=first) == {"market_data": 2}
            assert history_rows_write(conn=conn, rows=again) == {"market_data": 0}
            total = conn.execute("SELECT count(*) FROM history_markettick").fetchone()
            assert total == (LEGACY_TICKS + 2,)
