"""Parsing the history stream's entries (written by `aggregation.history_log.HistoryLog`).

An entry has one field `r`: the JSON array `[channel, seq, received_at_epoch, record, row_key]`.
`row_key` is `{writer}-{n}` (1 to 16 hex digits, then a decimal number): since issue 14 the
input's dedupe key, `1-{63-bit hash of the record}` (`aggregation.history_log.content_key`), the
same in every worker; before it, a random id of the log and a counter. Entries appended before
row keys existed have none, and their replay key is the entry id. Anything else is malformed:
the recorder counts it, logs it and acknowledges it, so that one bad entry can never stop the
stream from draining.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from history.models import LEGACY_SEQ_BITS, LEGACY_WRITER
from shared.core.records import Channel, Rejection, validate_record

_CHANNELS: Final = {channel.value: channel for channel in Channel}
_BIGINT_MAX: Final = 2**63 - 1
# received_at is the worker's wall clock; outside these years it is not a time but garbage
# (and outside what PostgreSQL's timestamptz and Python's datetime both hold).
_EPOCH_MIN: Final = datetime(1970, 1, 2, tzinfo=UTC).timestamp()
_EPOCH_MAX: Final = datetime(9999, 1, 1, tzinfo=UTC).timestamp()
_ROW_KEY_RE: Final = re.compile(r"([0-9a-f]{1,16})-([0-9]{1,19})")
_LEGACY_SEQ_MAX: Final = 2**LEGACY_SEQ_BITS - 1
_LEGACY_MS_MAX: Final = _BIGINT_MAX >> LEGACY_SEQ_BITS


def row_key_parts(row_key: str) -> tuple[int, int] | None:
    """`'9f3a0c1d-41'` -> (writer as a signed 64-bit integer, 41); None unless a row key.

    The writer part 0 is refused: it is the writer id of rows keyed by their entry id.
    """
    match = _ROW_KEY_RE.fullmatch(row_key)
    if match is None:
        return None
    writer, n = int(match[1], 16), int(match[2])
    if writer == LEGACY_WRITER or n > _BIGINT_MAX:
        return None
    return (writer - 2**64 if writer > _BIGINT_MAX else writer), n


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One well-formed history entry, ready for the COPY into the staging table."""

    stream_ms: int
    stream_seq: int
    channel: str
    seq: int
    received_at: datetime
    record_json: str
    row_key: str | None = None  # the writer's key: unique per table, so a re-append is a no-op
    # What `parse_entry` already has, so that the batch write does not compute it again: the
    # record as validated (`record_json` is its JSON), and the row key's (writer, n). Optional
    # (a row built from JSON alone parses it when written); not part of a row's equality.
    record: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    parts: tuple[int, int] | None = field(default=None, compare=False, repr=False)

    @property
    def entry_id(self) -> str:
        """The Redis stream entry id (`ms-seq`)."""
        return f"{self.stream_ms}-{self.stream_seq}"

    def key(self) -> tuple[int, int]:
        """The replay key: (writer, n) of the row key, else (LEGACY_WRITER, ms << 20 | seq)."""
        if self.parts is not None:
            return self.parts
        if self.row_key is not None:
            parts = row_key_parts(self.row_key)
            if parts is None:
                raise ValueError(f"not a row key: {self.row_key!r}")
            return parts
        return LEGACY_WRITER, self.stream_ms << LEGACY_SEQ_BITS | self.stream_seq


@dataclass(frozen=True, slots=True)
class Malformed:
    """An entry that cannot be recorded, and why."""

    entry_id: str
    reason: str


def split_entry_id(entry_id: str) -> tuple[int, int] | None:
    """`'1712-3'` -> `(1712, 3)`; None unless it is a valid stream entry id."""
    ms, sep, seq = entry_id.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit():
        return None
    pair = int(ms), int(seq)
    return pair if max(pair) <= _BIGINT_MAX else None


def parse_entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> StreamRow | Malformed:
    """Parse one stream entry; never raises."""
    text_id = entry_id.decode("ascii", "replace") if isinstance(entry_id, bytes) else entry_id
    ids = split_entry_id(text_id)
    if ids is None:
        return Malformed(text_id, "bad_entry_id")
    raw = fields.get(b"r")
    if raw is None or len(fields) != 1:
        return Malformed(text_id, "bad_fields")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Malformed(text_id, "bad_json")
    if not isinstance(value, list) or len(value) not in (4, 5):
        return Malformed(text_id, "not_a_row")
    channel_name, seq, received, record = value[:4]
    row_key = value[4] if len(value) == 5 else None
    parts = None
    if row_key is not None:
        parts = row_key_parts(row_key) if isinstance(row_key, str) else None
        if parts is None:
            return Malformed(text_id, "bad_row_key")
    if row_key is None and (ids[0] > _LEGACY_MS_MAX or ids[1] > _LEGACY_SEQ_MAX):
        return Malformed(text_id, "bad_entry_id")  # no room for it in the legacy key
    channel = _CHANNELS.get(channel_name) if isinstance(channel_name, str) else None
    if channel is None:
        return Malformed(text_id, "unknown_channel")
    if type(seq) is not int or not 0 <= seq <= _BIGINT_MAX:
        return Malformed(text_id, "bad_seq")
    if type(received) not in (int, float) or not math.isfinite(received):
        return Malformed(text_id, "bad_received_at")
    if not _EPOCH_MIN <= received <= _EPOCH_MAX:
        return Malformed(text_id, "bad_received_at")
    checked = validate_record(channel, record)
    if isinstance(checked, Rejection):
        return Malformed(text_id, f"record_{checked.reason}")
    return StreamRow(
        stream_ms=ids[0],
        stream_seq=ids[1],
        channel=channel.value,
        seq=seq,
        received_at=datetime.fromtimestamp(received, UTC),
        record_json=orjson.dumps(checked.record).decode(),
        row_key=row_key,
        record=checked.record,
        parts=parts,
    )
