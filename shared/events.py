"""Events sent over the channel layer to the hubs, defined once (STYLE: `noun.verb`).

Each is handled by the hub method of the same name with `.` as `_` (`state.update` by
`Hub.state_update`), as Channels dispatches; an event of any other type is refused.
"""

from __future__ import annotations

from typing import Literal, TypedDict


class StateUpdate(TypedDict):
    """One cadence's update, encoded once by the worker; handled by `Hub.state_update`.

    `json` and `msgpack` are the exact client frame `{"type":"update","seq","base_seq","epoch",
    "timestamp","changes"}` in each format. `base_seq` is the seq of that cadence's previous
    update: applying the changes to any snapshot taken at `base_seq <= S < seq` gives the state
    at `seq` (design principle 4). `epoch` names the seq lineage (contract 4.1).
    """

    type: Literal["state.update"]
    cadence: str
    seq: int
    base_seq: int
    epoch: str
    sent_at: float  # the worker's wall clock at the tick, for broadcast latency
    json: str
    msgpack: bytes


class ClientKick(TypedDict):
    """An admin's request to close one client (code 4000); handled by `Hub.client_kick`.

    Sent to every hub's control group: the process that holds `client_id` closes it.
    """

    type: Literal["client.kick"]
    client_id: str


class ClientNotice(TypedDict):
    """A staff notice for every client (realtime/notices.py); handled by `Hub.client_notice`.

    Sent to every hub's control group; each hub checks it again before writing the frame.
    """

    type: Literal["client.notice"]
    level: str
    text: str


# Every event type a hub handles.
HUB_EVENTS: tuple[str, ...] = ("state.update", "client.kick", "client.notice")
