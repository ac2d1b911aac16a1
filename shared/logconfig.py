"""Logging as JSON lines on stderr, one object per record, at DASHBOARD_LOG_LEVEL."""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from typing import Any

import pythonjsonlogger.json

# The id of the HTTP request being served in this context (`dashboard_project.request_id` sets
# it); None outside a request: WebSocket traffic, the hub's tasks, the worker. Defined here, not
# beside the middleware, because settings import this module before Django is set up.
current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record logged while an HTTP request is being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Called for each record the handler emits; never drops one."""
        if not hasattr(record, "request_id"):
            request_id = current_request_id.get()
            if request_id is not None:
                record.request_id = request_id
        return True


class ErrorCount(logging.Filter):
    """Counts records at ERROR and above (the web process's stats line reports them)."""

    count = 0  # process-wide: one handler per process carries this filter

    def filter(self, record: logging.LogRecord) -> bool:
        """Called for each record the handler emits; never drops one."""
        if record.levelno >= logging.ERROR:
            ErrorCount.count += 1
        return True


# An API key (`dsk_` + 43 URL-safe characters) or any `token=` query value: servers log request
# paths (uvicorn logs each WebSocket handshake with its query string), and a key in a log file
# is a leaked key.
_SECRET = re.compile(r"(dsk_|token=)[^\s&\"'\\]+")


def redact(text: str) -> str:
    """`text` with every API key and `token=` value replaced by a marker."""
    return _SECRET.sub(r"\1[redacted]", text)


# The attributes every record has that no caller's text reaches (the logger's name, the source
# file, the level...): the filter scans only the others — the extras, and a stack trace.
_PLAIN_FIELDS = frozenset(vars(logging.makeLogRecord({}))) - {"stack_info", "exc_text"}


class RedactSecrets(logging.Filter):
    """Removes API keys from every record: its message and any string field (extras)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Called for each record the handler emits; never drops one."""
        message = record.getMessage()
        if "dsk_" in message or "token=" in message:
            record.msg, record.args = redact(message), None
        for key, value in vars(record).items():  # values replaced in place: the dict keeps its size
            if (
                key not in _PLAIN_FIELDS
                and isinstance(value, str)
                and ("dsk_" in value or "token=" in value)
            ):
                setattr(record, key, redact(value))
        return True


# The level as the earlier service (zerolog) wrote it, so that queries on its logs keep working.
LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


class JsonFormatter(pythonjsonlogger.json.JsonFormatter):
    """One JSON object per record; `level` in lower case (`LEVEL_NAMES`)."""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        """Called for each record: the configured fields, then the level renamed."""
        super().add_fields(log_data, record, message_dict)
        log_data["level"] = LEVEL_NAMES.get(record.levelno, record.levelname.lower())


class DropHandshakeLines(logging.Filter):
    """Drops uvicorn's INFO line per WebSocket handshake (`"WebSocket /ws?..." [accepted]`):
    `realtime.clientlog`'s `ws.connect` event says the same with the client's id, type and
    format, and at 1,000 handshakes a second a second line each is a cost on the handshake
    path (issue 18's profile: 3 % in logging). uvicorn's other lines are kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and record.msg == _HANDSHAKE_LINE)


_HANDSHAKE_LINE = '%s - "WebSocket %s" [accepted]'  # uvicorn 0.54, protocols/websockets


def logging_config(level: str) -> dict[str, Any]:
    """Return the dictConfig for every process: JSON lines with time, level, logger, message."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": RequestIdFilter},
            "error_count": {"()": ErrorCount},
            "redact_secrets": {"()": RedactSecrets},
            "drop_handshake_lines": {"()": DropHandshakeLines},
        },
        "formatters": {
            "json": {
                "()": JsonFormatter,
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                "timestamp": False,
            },
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["request_id", "error_count", "redact_secrets"],
            },
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # Django logs every request at INFO through daphne's access log already.
            "django.server": {"level": "WARNING"},
            "daphne": {"level": "WARNING"},
            "httpx": {"level": "WARNING"},  # one INFO line per Strategy service poll otherwise
            "uvicorn.error": {"filters": ["drop_handshake_lines"]},
        },
    }
