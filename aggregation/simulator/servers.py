"""The backend services of contract 3.2, served on loopback from the demo desk's state.

Order Execution and Account Monitor are grpc.aio servers of the project's own protos; the
Strategy Engine is a minimal HTTP/1.1 server on asyncio streams (`GET /status`), so all three
run in the simulator's event loop and read the desk without locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Final

import grpc  # type: ignore[import-untyped]  # grpcio ships no type hints
import orjson

from aggregation.backends.protos import (
    account_service_pb2,
    account_service_pb2_grpc,
    order_service_pb2,
    order_service_pb2_grpc,
)
from aggregation.simulator.desk import ORDER_MEMORY, Desk

logger = logging.getLogger("aggregation.simulator")

DEFAULT_ORDER_LIMIT: Final = 100  # a GetOrders without a limit gets contract 3.1's 100
# A well-behaved client sends its request head at once; an idle connection is dropped.
REQUEST_TIMEOUT_S: Final = 5.0
# In-flight calls get this long to finish when a server stops, within the 10 s shutdown budget.
STOP_GRACE_S: Final = 1.0


class OrderService(order_service_pb2_grpc.OrderServiceServicer):
    """`OrderService` answering from the desk's orders."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    async def GetOrders(  # named by the generated servicer
        self, request: order_service_pb2.GetOrdersRequest, context: Any
    ) -> order_service_pb2.GetOrdersResponse:
        """Called for each GetOrders RPC: the newest `limit` orders, oldest first."""
        if request.limit < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "limit must not be negative")
        limit = min(request.limit or DEFAULT_ORDER_LIMIT, ORDER_MEMORY)
        orders = [
            order_service_pb2.Order(**_known(order_service_pb2.Order, record))
            for record in self.desk.orders_snapshot(limit)
        ]
        return order_service_pb2.GetOrdersResponse(orders=orders)


class AccountService(account_service_pb2_grpc.AccountServiceServicer):
    """`AccountService` answering from the desk's account."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    async def GetAccount(  # named by the generated servicer
        self, request: account_service_pb2.GetAccountRequest, context: Any
    ) -> account_service_pb2.Account:
        """Called for each GetAccount RPC: the account as it is now."""
        account = self.desk.account()
        return account_service_pb2.Account(**_known(account_service_pb2.Account, account))


def _known(message_type: Any, record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `record` that `message_type` has (a record may carry extra ones)."""
    fields = message_type.DESCRIPTOR.fields_by_name
    return {name: value for name, value in record.items() if name in fields}


class GrpcServer:
    """One grpc.aio server with one service, bound to `address` (`host:port`, port 0 = any)."""

    def __init__(self, address: str, register: Callable[[Any], None]) -> None:
        self.address = address
        self._server = grpc.aio.server()
        register(self._server)
        self.port = 0

    async def start(self) -> int:
        """Bind and start serving; return the bound port."""
        host = self.address.rsplit(":", 1)[0]
        try:
            self.port = self._server.add_insecure_port(self.address)
        except RuntimeError as exc:  # grpc raises on an address it cannot bind
            raise OSError(f"cannot listen on {self.address}: {exc}") from None
        if not self.port:
            raise OSError(f"cannot listen on {self.address}")
        await self._server.start()
        logger.info("grpc server listening", extra={"address": f"{host}:{self.port}"})
        return int(self.port)

    async def stop(self) -> None:
        """Stop serving, letting calls in flight finish for a moment."""
        await self._server.stop(STOP_GRACE_S)


def order_server(desk: Desk, address: str) -> GrpcServer:
    """The Order Execution service of `desk`, to be started on `address`."""
    service = OrderService(desk)

    def register(server: Any) -> None:
        # The generated registration function is unannotated.
        order_service_pb2_grpc.add_OrderServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]

    return GrpcServer(address, register)


def account_server(desk: Desk, address: str) -> GrpcServer:
    """The Account Monitor service of `desk`, to be started on `address`."""
    service = AccountService(desk)

    def register(server: Any) -> None:
        # The generated registration function is unannotated.
        account_service_pb2_grpc.add_AccountServiceServicer_to_server(service, server)  # type: ignore[no-untyped-call]

    return GrpcServer(address, register)


class StatusHttpServer:
    """`GET /status` answering `body()` as JSON; any other path is a 404 JSON error."""

    def __init__(self, *, host: str, port: int, body: Callable[[], bytes]) -> None:
        self.host = host
        self.port = port
        self.body = body
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Bind and start serving; return the bound port."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("http server listening", extra={"address": f"{self.host}:{self.port}"})
        return self.port

    async def stop(self) -> None:
        """Stop listening and end the connections still open."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            status, payload = await self._respond(reader)
            head = (
                f"HTTP/1.1 {status.value} {status.phrase}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + payload)
            await writer.drain()
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or stalled; nothing to answer
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[HTTPStatus, bytes]:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return _error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(parts) != 3:
            return _error(HTTPStatus.BAD_REQUEST)
        method, target, _version = parts
        if target.split("?", 1)[0] != "/status":
            return _error(HTTPStatus.NOT_FOUND)
        if method != "GET":
            return _error(HTTPStatus.METHOD_NOT_ALLOWED)
        return HTTPStatus.OK, self.body()


def _error(status: HTTPStatus) -> tuple[HTTPStatus, bytes]:
    code = status.phrase.lower().replace(" ", "_")
    return status, orjson.dumps({"error": code, "message": status.phrase})
