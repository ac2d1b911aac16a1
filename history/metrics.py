"""Prometheus metrics of the recorder process (contract section 6)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ROWS_WRITTEN = Counter(
    "dashboard_history_rows_written",
    "History rows inserted into PostgreSQL, by type (replayed entries are not counted).",
    ["type"],
)
ROWS_MALFORMED = Counter(
    "dashboard_history_rows_malformed",
    "Stream entries that could not be recorded (malformed, or refused by PostgreSQL); acked.",
    ["reason"],
)
BATCHES = Counter("dashboard_history_batches", "Batches written to PostgreSQL.")
WRITE_FAILURES = Counter(
    "dashboard_history_write_failures",
    "Batch writes that failed (PostgreSQL unreachable or failing); the batch is retried.",
)
BACKLOG = Gauge(
    "dashboard_history_backlog", "Stream entries not yet recorded (the stream's length)."
)
LAG = Gauge("dashboard_history_lag_seconds", "Age of the oldest stream entry not yet recorded.")
