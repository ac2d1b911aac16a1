"""A typed client of the dashboard server's `/ws` stream (contract sections 4 and 4.1).

`DeskClient` connects (token, type, format, channels), keeps the state by applying updates,
checks continuity (`base_seq`, `epoch`), resumes after a reconnect, follows the feed's `status`
and reconnects at once when the server shuts down; `states()` is an async iterator of
`DeskState`. `Follower` is the same protocol logic without I/O. See docs/CLIENT.md and
`python -m dashboard_client --help`.
"""

from dashboard_client.changes import ChangeConflict, apply_changes
from dashboard_client.client import DeskClient, DeskState
from dashboard_client.follower import Action, FeedHealth, Follower, Notice, Outcome

__all__ = [
    "Action",
    "ChangeConflict",
    "DeskClient",
    "DeskState",
    "FeedHealth",
    "Follower",
    "Notice",
    "Outcome",
    "apply_changes",
]
