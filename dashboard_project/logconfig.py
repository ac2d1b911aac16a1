"""Logging as JSON lines on stderr, one object per record, at DASHBOARD_LOG_LEVEL."""

from __future__ import annotations

from typing import Any


def logging_config(level: str) -> dict[str, Any]:
    """Return the dictConfig for every process: JSON lines with time, level, logger, message."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                "timestamp": False,
            },
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json"},
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # Django logs every request at INFO through daphne's access log already.
            "django.server": {"level": "WARNING"},
            "daphne": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},  # one INFO line per Strategy service poll otherwise
        },
    }
