"""API keys never reach a log line (shared.logconfig.RedactSecrets)."""

from __future__ import annotations

import logging

import pytest

from shared.logconfig import DropHandshakeLines, RedactSecrets, redact

KEY = "dsk_Zm9vYmFyYmF6cXV4LXF1dXgtY29ycmVjdC1ob3JzZQ"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f'"WebSocket /ws?token={KEY}&type=tui" [accepted]',
            '"WebSocket /ws?token=[redacted]&type=tui" [accepted]',
        ),
        (f"Authorization: Bearer {KEY}", "Authorization: Bearer dsk_[redacted]"),
        ("/ws?token=%00%01 x", "/ws?token=[redacted] x"),
        ("/ws?type=web", "/ws?type=web"),
    ],
)
def test_redact_removes_keys_and_token_values(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_filter_redacts_the_message_its_arguments_and_extra_fields() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, "x", 1, "%s - %s", ("1.2.3.4", f"/ws?token={KEY}"), None
    )
    record.color_message = f"/ws?token={KEY}"
    assert RedactSecrets().filter(record) is True
    assert KEY not in record.getMessage()
    assert KEY not in vars(record)["color_message"]
    assert record.getMessage() == "1.2.3.4 - /ws?token=[redacted]"


def test_a_key_in_a_stack_trace_is_redacted_too() -> None:
    import logging

    from shared.logconfig import RedactSecrets

    record = logging.makeLogRecord(
        {"msg": "failed", "stack_info": "Stack (most recent call last):\n  url ?token=dsk_abc"}
    )
    RedactSecrets().filter(record)
    assert "dsk_abc" not in str(record.stack_info)


def test_uvicorns_handshake_line_is_dropped_and_its_other_lines_kept() -> None:
    def record(level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", level, "x", 1, msg, ("1.2.3.4", "/ws"), None)

    drop = DropHandshakeLines()
    assert drop.filter(record(logging.INFO, '%s - "WebSocket %s" [accepted]')) is False
    assert drop.filter(record(logging.INFO, '%s - "WebSocket %s" 403')) is True
    assert drop.filter(record(logging.INFO, "Application startup complete.")) is True
    assert drop.filter(record(logging.WARNING, '%s - "WebSocket %s" [accepted]')) is True
