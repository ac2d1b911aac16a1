"""The Order Execution and Account Monitor gRPC services (contract 3.2) as backends."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Self

import grpc  # type: ignore[import-untyped]  # grpcio ships no type hints
from google.protobuf.message import Message  # type: ignore[import-untyped]  # nor does protobuf

from aggregation.backends.base import Backend, BackendUnavailable, CallPolicy
from aggregation.backends.protos import (
    account_service_pb2,
    account_service_pb2_grpc,
    order_service_pb2,
    order_service_pb2_grpc,
)
from shared.core.records import Accepted, Channel

if TYPE_CHECKING:
    from shared.config import Settings

# Codes after which the same call may well succeed: the server is starting, restarting,
# overloaded or slow. Anything else (UNIMPLEMENTED, INVALID_ARGUMENT, ...) will not improve.
RETRYABLE_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)

CHANNEL_OPTIONS: Final = (
    # After an outage grpc-core backs reconnects off up to 120 s, long after the breaker lets
    # a trial call through; our retry and breaker pace the calls, so keep the channel eager.
    # (Not `min_reconnect_backoff_ms`: grpc-core also uses it as the connect timeout.)
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # max_orders goes up to 100,000 orders of ~150 bytes: 15 MB, past the 4 MiB default.
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
)


class GrpcBackend(Backend):
    """A backend reached over one insecure grpc.aio channel, opened on first use."""

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
        self._grpc_channel: Any = None  # a grpc.aio.Channel, opened inside the running loop

    def _open_channel(self) -> Any:
        # grpc.aio binds a channel to the event loop running when it is created.
        if self._grpc_channel is None:
            self._grpc_channel = grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        return self._grpc_channel

    async def aclose(self) -> None:
        """Called once at shutdown: close the channel, cancelling calls in flight."""
        if self._grpc_channel is not None:
            grpc_channel, self._grpc_channel = self._grpc_channel, None
            await grpc_channel.close()

    def _rpc_error(self, error: Any) -> BackendUnavailable:
        """Turn a grpc.aio.AioRpcError into the failure to raise."""
        code = error.code()
        return BackendUnavailable(
            self.name, f"{code.name}: {error.details()}", retryable=code in RETRYABLE_CODES
        )


class OrderServiceBackend(GrpcBackend):
    """`OrderService.GetOrders(limit)`: the newest orders as ORDERS records."""

    name = "order_service"
    channel = Channel.ORDERS

    def __init__(
        self,
        *,
        address: str,
        limit: int,
        policy: CallPolicy,
    ) -> None:
        super().__init__(
            address=address,
            policy=policy,
        )
        self.limit = limit

    @classmethod
    def from_settings(cls, config: Settings) -> Self:
        """Build the backend from the settings (`order_service_grpc`, `max_orders`)."""
        return cls(
            address=config.order_service_grpc,
            limit=config.max_orders,
            policy=CallPolicy.from_settings(config),
        )

    async def _call(self) -> list[Accepted]:
        # The generated stub classes are unannotated.
        stub = order_service_pb2_grpc.OrderServiceStub(self._open_channel())  # type: ignore[no-untyped-call]
        request = order_service_pb2.GetOrdersRequest(limit=self.limit)
        try:
            response = await stub.GetOrders(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise self._rpc_error(exc) from None
        return self._accept(message_to_record(order) for order in response.orders)


class AccountServiceBackend(GrpcBackend):
    """`AccountService.GetAccount()`: the account as one ACCOUNT record."""

    name = "account_service"
    channel = Channel.ACCOUNT

    @classmethod
    def from_settings(cls, config: Settings) -> Self:
        """Build the backend from the settings (`account_service_grpc`)."""
        return cls(
            address=config.account_service_grpc,
            policy=CallPolicy.from_settings(config),
        )

    async def _call(self) -> list[Accepted]:
        # The generated stub classes are unannotated.
        stub = account_service_pb2_grpc.AccountServiceStub(self._open_channel())  # type: ignore[no-untyped-call]
        try:
            account = await stub.GetAccount(
                account_service_pb2.GetAccountRequest(), timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise self._rpc_error(exc) from None
        records = self._accept([message_to_record(account)])
        if not records:
            raise BackendUnavailable(self.name, "the account it sent is invalid")
        return records


def message_to_record(message: Message) -> dict[str, Any]:
    """Convert a message to a record holding only the fields the sender set."""
    record: dict[str, Any] = {}
    for field in _fields(message):
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = dict(getattr(message, field.name))
            if value:  # a proto3 map has no presence: empty means not sent
                record[field.name] = value
        elif field.has_presence and message.HasField(field.name):
            record[field.name] = getattr(message, field.name)
    return record


def _fields(message: Message) -> Iterable[Any]:
    return message.DESCRIPTOR.fields  # type: ignore[no-any-return]  # protobuf is untyped
