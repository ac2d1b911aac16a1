"""The Strategy Engine HTTP service (contract 3.2) as a backend: `GET {base}/status`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Self

import httpx
import msgspec

from aggregation.backends.base import Backend, BackendUnavailable, CallPolicy
from shared.core.records import Accepted, Channel

if TYPE_CHECKING:
    from shared.config import Settings

# A status of a few dozen strategies is a few KiB; a reply past 4 MiB is a broken or hostile
# server, refused before it fills the worker's memory.
MAX_BODY_BYTES: Final = 4 * 1024 * 1024

_json: Final = msgspec.json.Decoder()


class StrategyServiceBackend(Backend):
    """`GET /status` returning `{"strategies": [Strategy, ...]}`: STRATEGIES records."""

    name = "strategy_service"
    channel = Channel.STRATEGIES

    def __init__(
        self,
        *,
        address: str,
        policy: CallPolicy,
    ) -> None:
        super().__init__(
            address=address,
            policy=policy,
        )
        self.url = address.rstrip("/") + "/status"
        # trust_env=False: a service-to-service call must not detour through a user's proxy.
        self._client = httpx.AsyncClient(timeout=policy.timeout_s, trust_env=False)

    @classmethod
    def from_settings(cls, config: Settings) -> Self:
        """Build the backend from the settings (`strategy_service_http`)."""
        return cls(
            address=str(config.strategy_service_http),
            policy=CallPolicy.from_settings(config),
        )

    async def aclose(self) -> None:
        """Called once at shutdown: close the connection pool."""
        await self._client.aclose()

    async def _call(self) -> list[Accepted]:
        body = await self._get()
        try:
            document = _json.decode(body)
        except msgspec.DecodeError as exc:
            raise BackendUnavailable(self.name, f"reply is not JSON: {exc}") from None
        if not isinstance(document, dict) or not isinstance(document.get("strategies"), list):
            raise BackendUnavailable(self.name, 'reply is not {"strategies": [...]}')
        return self._accept(document["strategies"])

    async def _get(self) -> bytes:
        try:
            async with self._client.stream("GET", self.url) as response:
                if response.status_code >= 500:
                    raise BackendUnavailable(
                        self.name, f"HTTP {response.status_code}", retryable=True
                    )
                if not response.is_success:
                    raise BackendUnavailable(self.name, f"HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise BackendUnavailable(
                            self.name, f"reply larger than {MAX_BODY_BYTES} bytes"
                        )
                return bytes(body)
        except httpx.TransportError as exc:
            # Refused, reset, timed out, or a protocol error: the next attempt may do better.
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise BackendUnavailable(self.name, reason, retryable=True) from None
