"""Prometheus metrics of the worker process (contract section 6), served on its own port."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INGEST_MESSAGES = Counter(
    "dashboard_ingest_messages",
    "Input messages by channel kind and result (applied, unchanged, or the rejection reason).",
    ["channel", "result"],
)
INGEST_RECONNECTS = Counter(
    "dashboard_ingest_reconnects",
    "Times the pub/sub subscriber reconnected (Redis restart, or Redis cut a slow subscriber).",
)
STATE_UPDATE_LAG = Gauge(
    "dashboard_state_update_lag_seconds",
    "Largest delay, over the last second, from a record's updated_at to its application.",
)
STATE_SEQ = Gauge("dashboard_state_seq", "The state's current sequence number.")
BACKEND_UP = Gauge("dashboard_backend_up", "1 if the backend's last call succeeded.", ["backend"])
HISTORY_QUEUE_DEPTH = Gauge(
    "dashboard_history_queue_depth",
    "History rows not yet in PostgreSQL: the stream's length plus the worker's buffer.",
)
HISTORY_ROWS_DROPPED = Counter(
    "dashboard_history_rows_dropped", "History rows dropped because the stream was full."
)
WORKER_IS_LEADER = Gauge("dashboard_worker_is_leader", "1 while this worker holds the lease.")
UPDATES_BROADCAST = Counter(
    "dashboard_updates_broadcast", "Update events sent to the channel layer.", ["cadence"]
)
TICK_DURATION = Histogram(
    "dashboard_tick_duration_seconds",
    "Time to take, encode and send one cadence's update.",
    ["cadence"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
