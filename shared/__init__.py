"""The vocabulary the worker, the web process and the recorder share, importable by each.

The pure core (`core/`: records, trading state, diffs), the channel-layer events, the Redis key
names and cadences, the clock, the typed settings and logging, Redis client construction and
the supervision of background tasks. It imports nothing from `aggregation`, `realtime`,
`history`, `access` or `dashboard_project`, so every process can import it without the others.
"""
