"""The one small interface of every backend service (design principle 8), and its call policy.

A backend turns one call to a service into validated records. A subclass sets `name` and
`channel` (class attributes: the breaker is named in `__init__`) and implements `_call` (one
attempt, returning `self._accept(...)` of the decoded objects) and `aclose`. `Backend.fetch`
wraps `_call` in the same policy for every implementation: a timeout per attempt, retries with
exponential backoff (capped at `MAX_BACKOFF_S`) only for a failure marked `retryable`, and a
circuit breaker that fails fast while the service is known to be down. Every failure surfaces
as `BackendUnavailable` (a timeout and any unforeseen exception included; cancellation is not a
failure and propagates); a backend returns only records that validate — the others are dropped,
counted and logged, never patched. The worker's `aggregation/polling.py` calls `fetch` every
`refresh_period_s` (strategies also on demand) and sets `dashboard_backend_up`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from circuitbreaker import CircuitBreaker  # type: ignore[import-untyped]  # ships no type hints
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from shared.core.records import Accepted, Channel, Rejection, validate_record

if TYPE_CHECKING:
    from shared.config import Settings

logger = logging.getLogger("aggregation.backends")

# Ceiling of one backoff sleep: the sleep is `backend_retry_backoff_s` doubled per retry, and
# with `backend_retries` up to 10 (the setting's bound) an uncapped one would outlast the
# refresh period (`refresh_period_s`, 30 s by default) the call runs within.
MAX_BACKOFF_S: Final = 5.0


class BackendUnavailable(Exception):
    """A call that gave no records: unreachable, slow, broken, or (from `fetch`) breaker open."""

    def __init__(self, name: str, reason: str, *, retryable: bool = False) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        # Transport trouble (refused, timed out, 5xx) may pass; a malformed reply will not.
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class BackendHealth:
    """One backend's state, without calling it (`Backend.health`).

    The worker's heartbeat carries `up` of each backend, which `/health/ready` lists under
    `checks.backends`; the other fields are for tests and debugging. `dashboard_backend_up` is set
    by `aggregation/polling.py` from each `fetch`'s outcome, not from here.
    """

    name: str
    up: bool  # the last call succeeded (False until one has)
    breaker: str  # "closed", "open" or "half_open"
    last_error: str | None
    last_success_at: float | None  # time.time() of the last successful call
    consecutive_failures: int
    rejected_records: int = 0  # invalid records dropped since start


class _Breaker(CircuitBreaker):  # type: ignore[misc]  # the library is untyped (Any)
    """The library's breaker, fed outcomes explicitly (`succeeded`, `failed`) by `fetch`.

    Not its context manager, which would count a cancelled call as a success and close the
    circuit, nor its decorator, which registers every instance in a process-wide monitor.
    """

    def succeeded(self) -> None:
        """Called after a successful call: closes the circuit and zeroes its failure count."""
        self.reset()

    def failed(self, error: BackendUnavailable) -> None:
        """Called after a failed call (all its attempts): counts it, opening at the threshold."""
        self.__exit__(type(error), error, None)

    def state_name(self) -> str:
        """The current state as the library names it: closed, open or half_open."""
        return str(self.state)

    def remaining_s(self) -> float:
        """Seconds until an open circuit lets one trial call through."""
        return float(self.open_remaining)


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How every call to a backend is made: timeout, retries with backoff, circuit breaker."""

    timeout_s: float
    retries: int
    backoff_s: float
    failure_threshold: int
    reset_s: float

    @classmethod
    def from_settings(cls, config: Settings) -> CallPolicy:
        """The policy of the `backend_*` and `breaker_*` settings."""
        return cls(
            timeout_s=config.backend_timeout_s,
            retries=config.backend_retries,
            backoff_s=config.backend_retry_backoff_s,
            failure_threshold=config.breaker_failure_threshold,
            reset_s=config.breaker_reset_s,
        )


class Backend(ABC):
    """A backend service as the worker sees it: `fetch()` records, `health()`, `aclose()`.

    The circuit counts one failure per `fetch` (after its retries), not per attempt.
    """

    name: str
    channel: Channel

    def __init__(self, *, address: str, policy: CallPolicy) -> None:
        self.address = address
        self.timeout_s = policy.timeout_s
        self.retries = policy.retries
        self.backoff_s = policy.backoff_s
        self._breaker = _Breaker(
            failure_threshold=policy.failure_threshold,
            recovery_timeout=policy.reset_s,
            expected_exception=BackendUnavailable,
            name=self.name,
        )
        self._last_error: str | None = None
        self._last_success_at: float | None = None
        self._consecutive_failures = 0
        self._rejected = 0

    @abstractmethod
    async def _call(self) -> list[Accepted]:
        """Make one attempt (under `timeout_s`); raise BackendUnavailable, retryable if it may pass.

        Return `self._accept(objects)`: the records that validate.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Called once at shutdown: release connections."""

    async def fetch(self) -> list[Accepted]:
        """Call the service under the timeout, retry and breaker policy; return valid records.

        Raises BackendUnavailable at once while the circuit is open, else after the last attempt.
        """
        if self._breaker.opened:
            raise BackendUnavailable(
                self.name,
                f"circuit open for {self._breaker.remaining_s():.0f} s more "
                f"after {self._consecutive_failures} failures; last: {self._last_error}",
            )
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=self.backoff_s, max=MAX_BACKOFF_S),
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            records: list[Accepted] = await retrying(self._attempt)
        except BackendUnavailable as exc:
            self._breaker.failed(exc)
            self._last_error = exc.reason
            self._consecutive_failures += 1
            raise
        self._breaker.succeeded()
        self._last_error = None
        self._last_success_at = time.time()
        self._consecutive_failures = 0
        return records

    def health(self) -> BackendHealth:
        """Return the backend's current health, without calling it."""
        return BackendHealth(
            name=self.name,
            up=self._last_success_at is not None and self._consecutive_failures == 0,
            breaker=self._breaker.state_name(),
            last_error=self._last_error,
            last_success_at=self._last_success_at,
            consecutive_failures=self._consecutive_failures,
            rejected_records=self._rejected,
        )

    def _accept(self, objects: Iterable[object]) -> list[Accepted]:
        """Validate decoded records of this backend's channel; drop, count and log invalid ones.

        One warning per call (the first rejection's reason), not one per record.
        """
        accepted: list[Accepted] = []
        first: Rejection | None = None
        rejected = 0
        for obj in objects:
            result = validate_record(self.channel, obj)
            if isinstance(result, Accepted):
                accepted.append(result)
                continue
            rejected += 1
            first = first or result
        if first is not None:
            self._rejected += rejected
            logger.warning(
                "backend sent invalid records",
                extra={
                    "backend": self.name,
                    "rejected": rejected,
                    "reason": first.reason,
                    "field": first.field,
                    "detail": first.detail,
                },
            )
        return accepted

    async def _attempt(self) -> list[Accepted]:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._call()
        except TimeoutError:
            raise BackendUnavailable(
                self.name, f"no answer within {self.timeout_s} s", retryable=True
            ) from None
        except BackendUnavailable:
            raise
        except Exception as exc:  # a bug or an unforeseen library error: never crash the worker
            logger.exception("backend call failed unexpectedly", extra={"backend": self.name})
            raise BackendUnavailable(self.name, f"{type(exc).__name__}: {exc}") from exc

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.info(
            "backend call failed, retrying",
            extra={
                "backend": self.name,
                "attempt": state.attempt_number,
                "sleep_s": round(state.upcoming_sleep, 3),
                "error": str(error),
            },
        )


def _is_retryable(error: BaseException) -> bool:
    return isinstance(error, BackendUnavailable) and error.retryable
