"""Names of every Redis key, stream and channel-layer group the product owns, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from shared.core.records import Channel


@dataclass(frozen=True, slots=True)
class RedisNames:
    """Key names under a deployment's `redis_key_prefix`; input names under `input_prefix`."""

    prefix: str
    input_prefix: str = ""

    @property
    def leader(self) -> str:
        """The worker leader lease (value: the leader's id)."""
        return f"{self.prefix}:worker:leader"

    @property
    def heartbeat(self) -> str:
        """The leader's heartbeat: JSON with its id, seq and time; expires when it stops."""
        return f"{self.prefix}:worker:heartbeat"

    @property
    def seq(self) -> str:
        """The seq of the shared snapshot."""
        return f"{self.prefix}:state:seq"

    @property
    def epoch(self) -> str:
        """The seq lineage of the shared snapshot (contract 4.1), written with the seq."""
        return f"{self.prefix}:state:epoch"

    def state(self, channel: Channel) -> str:
        """The hash holding one channel of the shared snapshot."""
        return f"{self.prefix}:state:{channel.value}"

    @property
    def history_stream(self) -> str:
        """The Redis Stream of accepted changes waiting to be written to PostgreSQL."""
        return f"{self.prefix}:history"

    def history_appended(self, second: int) -> str:
        """The content keys (8 bytes each) the leader appended to the history stream in one
        second of its clock: what a standby taking over compares its buffered rows with."""
        return f"{self.prefix}:history:appended:{second}"

    def presence(self, process: str) -> str:
        """The hash of one web process's connected clients (`*`: every process's, for SCAN)."""
        return f"{self.prefix}:presence:{process}"

    def group(self, cadence: str) -> str:
        """The channel-layer group that receives one cadence's updates."""
        return f"{self.prefix}.updates.{cadence}"

    def input_pattern(self, kind: str) -> str:
        """The pub/sub pattern of one input kind of contract 3.1 (e.g. `market_data:*`)."""
        return f"{self.input_prefix}{kind}:*"

    def cache_key(self, symbol: str) -> str:
        """The market-data cache key of one symbol."""
        return f"{self.input_prefix}market_data:{symbol}"
