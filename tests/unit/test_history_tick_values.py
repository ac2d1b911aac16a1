"""`tick_values`' `updated_at` shape check (fixed characters by length, then `fromisoformat`)
refuses what the three rebuilt spellings cannot give back, as the regular expression it replaced
did. Whether the typed split stores what the JSONB split stores is tested against PostgreSQL in
tests/integration/test_history_tick_rows.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from history.tick_rows import tick_values

T0 = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


@pytest.mark.parametrize(
    "updated_at",
    [
        "2026-03-14 09:26:53.589793Z",
        "2026-03-14x09:26:53Z",
        "2026-03-14T09-26-53Z",
        "2026-03-14T09:26:53,589Z",
        "2026-03-14T09:26:53.589793z",
        "2026-03-14T09:26:53.5897930",
        "20260314T092653.589793Z",
        "2026-03-14T09:26:53.58a793Z",
        "2026-03-14T09:26:53.\uff1589793Z",  # a fullwidth digit
        "2026-W11-6T09:26:53Z",
        "2026-03-14T24:00:00Z",
        "2026-03-14T09:26:53.5897Z",
        "2026-03-14T09:26:53.589793+00:00",
    ],
)
def test_an_updated_at_not_in_a_rebuilt_spelling_takes_the_jsonb_way(updated_at: str) -> None:
    assert tick_values({"symbol": "A", "last_price": 1.5, "updated_at": updated_at}, T0) is None


@pytest.mark.parametrize(
    ("updated_at", "code"),
    [
        ("2026-03-14T09:26:53.589793Z", 0),
        ("2026-03-14T09:26:53.589Z", 1),
        ("2026-03-14T09:26:53Z", 2),
    ],
)
def test_the_rebuilt_spellings_are_typed(updated_at: str, code: int) -> None:
    split = tick_values({"symbol": "A", "last_price": 1.5, "updated_at": updated_at}, T0)
    assert split is not None
    assert split[1][0] == datetime.fromisoformat(updated_at)
    assert split[1][3] == code
