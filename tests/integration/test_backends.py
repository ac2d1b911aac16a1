"""The backends against the simulator's real gRPC and HTTP servers on loopback: no mocks."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from django.conf import settings

from aggregation.backends import (
    AccountServiceBackend,
    Backend,
    BackendUnavailable,
    CallPolicy,
    OrderServiceBackend,
    StrategyServiceBackend,
    build_backends,
)
from aggregation.backends.grpc_clients import message_to_record
from aggregation.backends.protos import (
    account_service_pb2,
    order_service_pb2,
    order_service_pb2_grpc,
)
from aggregation.simulator.desk import Desk
from aggregation.simulator.servers import (
    GrpcServer,
    StatusHttpServer,
    account_server,
    order_server,
)
from shared.core.records import Accepted, Channel

pytestmark = pytest.mark.integration

# A quick policy, so that a test sees retries, the breaker opening and closing in about a second.
POLICY: dict[str, Any] = {
    "timeout_s": 0.5,
    "retries": 1,
    "backoff_s": 0.01,
    "failure_threshold": 2,
    "reset_s": 0.5,
}


def free_port() -> int:
    """A loopback port that nothing listens on (the OS just handed it out and took it back)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def strategies_body(desk: Desk) -> Callable[[], bytes]:
    return lambda: orjson.dumps({"strategies": desk.strategies()})


@pytest.fixture
def desk() -> Desk:
    """A desk with some history, and a clock stopped so its records compare equal."""
    desk = Desk(symbols=6, seed=3, clock=lambda: 1_700_000_000.0)
    for _ in range(60):
        desk.tick_market(6)
        desk.step_orders()
        desk.step_positions()
        desk.step_strategies()
    return desk


@asynccontextmanager
async def serving(
    desk: Desk, ports: dict[str, int], body: Callable[[], bytes] | None = None
) -> AsyncIterator[dict[str, int]]:
    """Serve the desk's three services on loopback; fills `ports` with the bound ports."""
    orders = order_server(desk, f"127.0.0.1:{ports.get('orders', 0)}")
    account = account_server(desk, f"127.0.0.1:{ports.get('account', 0)}")
    http = StatusHttpServer(
        host="127.0.0.1", port=ports.get("strategies", 0), body=body or strategies_body(desk)
    )
    ports["orders"] = await orders.start()
    try:
        ports["account"] = await account.start()
        try:
            ports["strategies"] = await http.start()
            try:
                yield ports
            finally:
                await http.stop()
        finally:
            await account.stop()
    finally:
        await orders.stop()


def backends_for(ports: dict[str, int], **policy: Any) -> list[Backend]:
    options = {"policy": CallPolicy(**(POLICY | policy))}
    return [
        OrderServiceBackend(address=f"127.0.0.1:{ports['orders']}", limit=20, **options),
        AccountServiceBackend(address=f"127.0.0.1:{ports['account']}", **options),
        StrategyServiceBackend(address=f"http://127.0.0.1:{ports['strategies']}", **options),
    ]


@pytest.fixture
async def backends_factory() -> AsyncIterator[Callable[..., list[Backend]]]:
    """Build backends for given ports; every one built is closed after the test."""
    built: list[Backend] = []

    def build(ports: dict[str, int], **policy: Any) -> list[Backend]:
        backends = backends_for(ports, **policy)
        built.extend(backends)
        return backends

    yield build
    for backend in built:
        await backend.aclose()


def records(accepted: list[Accepted]) -> list[dict[str, Any]]:
    return [item.record for item in accepted]


async def test_fetch_returns_the_desks_records(
    desk: Desk, backends_factory: Callable[..., list[Backend]]
) -> None:
    async with serving(desk, {}) as ports:
        orders, account, strategies = backends_factory(ports)
        fetched_orders = await orders.fetch()
        fetched_account = await account.fetch()
        fetched_strategies = await strategies.fetch()

    assert records(fetched_orders) == desk.orders_snapshot(20)
    assert len(fetched_orders) == 20
    assert all(item.channel is Channel.ORDERS for item in fetched_orders)
    assert [item.key for item in fetched_orders] == [o["id"] for o in desk.orders_snapshot(20)]
    assert records(fetched_account) == [desk.account()]
    assert fetched_account[0].channel is Channel.ACCOUNT
    assert records(fetched_strategies) == desk.strategies()
    for backend in (orders, account, strategies):
        health = backend.health()
        assert health.up
        assert health.breaker == "closed"
        assert health.last_error is None
        assert health.consecutive_failures == 0
        assert health.last_success_at is not None
        assert time.time() - health.last_success_at < 10


def test_message_to_record_keeps_only_the_fields_sent() -> None:
    order = order_service_pb2.Order(id="ord-1", symbol="BTCUSDT", quantity=0.0)
    assert message_to_record(order) == {"id": "ord-1", "symbol": "BTCUSDT", "quantity": 0.0}
    account = account_service_pb2.Account(total_balance=5.0, balances={"USDT": 5.0})
    assert message_to_record(account) == {"total_balance": 5.0, "balances": {"USDT": 5.0}}
    assert message_to_record(account_service_pb2.Account()) == {}


class PartialOrders(order_service_pb2_grpc.OrderServiceServicer):
    """An order service that leaves required fields out of some orders."""

    async def GetOrders(self, request: Any, context: Any) -> Any:
        complete = {"id": "ord-1", "symbol": "BTCUSDT", "side": "BUY", "quantity": 1.0}
        return order_service_pb2.GetOrdersResponse(
            orders=[
                order_service_pb2.Order(**complete, status="NEW"),
                order_service_pb2.Order(**complete),  # no status
                order_service_pb2.Order(id="ord-3", symbol="ETHUSDT", side="SELL", status="NEW"),
            ]
        )


async def test_orders_missing_required_fields_are_dropped_not_zeroed(
    backends_factory: Callable[..., list[Backend]],
) -> None:
    server = GrpcServer(
        "127.0.0.1:0",
        lambda grpc_server: order_service_pb2_grpc.add_OrderServiceServicer_to_server(
            PartialOrders(), grpc_server
        ),
    )
    port = await server.start()
    try:
        orders = backends_factory({"orders": port, "account": port, "strategies": port})[0]
        fetched = await orders.fetch()
    finally:
        await server.stop()
    assert records(fetched) == [
        {"id": "ord-1", "symbol": "BTCUSDT", "side": "BUY", "quantity": 1.0, "status": "NEW"}
    ]
    assert orders.health().rejected_records == 2
    assert orders.health().up


async def test_unreachable_backends_raise_and_report_down(
    backends_factory: Callable[..., list[Backend]],
) -> None:
    ports = {"orders": free_port(), "account": free_port(), "strategies": free_port()}
    for backend in backends_factory(ports):
        with pytest.raises(BackendUnavailable) as raised:
            await backend.fetch()
        assert raised.value.name == backend.name
        health = backend.health()
        assert not health.up
        assert health.last_error
        assert health.consecutive_failures == 1
        assert health.last_success_at is None


async def test_build_backends_reads_the_settings() -> None:
    backends = build_backends(settings.CONFIG)
    try:
        assert [b.name for b in backends] == [
            "order_service",
            "account_service",
            "strategy_service",
        ]
        assert backends[0].address == settings.CONFIG.order_service_grpc
        assert backends[0].timeout_s == settings.CONFIG.backend_timeout_s
        assert isinstance(backends[0], OrderServiceBackend)
        assert backends[0].limit == settings.CONFIG.max_orders
    finally:
        for backend in backends:
            await backend.aclose()


class Silent(asyncio.Protocol):
    """Accepts a connection, reads what comes and never answers."""

    def __init__(self, transports: list[asyncio.BaseTransport]) -> None:
        self.transports = transports

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transports.append(transport)


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers: every call times out."""
    transports: list[asyncio.BaseTransport] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Silent(transports), "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for transport in transports:
            transport.close()
        await server.wait_closed()


@pytest.mark.parametrize("kind", ["orders", "account", "strategies"])
async def test_breaker_opens_after_threshold_and_fails_fast(
    kind: str, backends_factory: Callable[..., list[Backend]]
) -> None:
    async with silent_server() as port:
        index = ["orders", "account", "strategies"].index(kind)
        backend = backends_factory(
            dict.fromkeys(("orders", "account", "strategies"), port),
            timeout_s=0.2,
            retries=0,
            reset_s=30,
        )[index]
        # given: failure_threshold (2) calls that each time out
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(BackendUnavailable, match=r"no answer|DEADLINE_EXCEEDED"):
                await backend.fetch()
            assert time.monotonic() - started >= 0.15
        assert backend.health().breaker == "open"

        # when: called again
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="circuit open"):
            await backend.fetch()
        elapsed = time.monotonic() - started

    # then: it failed without waiting on the network, and health says why
    assert elapsed < 0.2 / 4  # well under the 0.2 s timeout
    health = backend.health()
    assert not health.up
    assert health.breaker == "open"
    assert health.consecutive_failures == 2
    assert health.last_error is not None
    assert "circuit open" not in health.last_error


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "not {"),
        (b'{"strategies": {"a": 1}}', "not {"),
        (b'{"items": []}', "not {"),
    ],
)
async def test_malformed_status_body_is_a_failure(
    body: bytes, reason: str, desk: Desk, backends_factory: Callable[..., list[Backend]]
) -> None:
    async with serving(desk, {}, body=lambda: body) as ports:
        strategies = backends_factory(ports)[2]
        with pytest.raises(BackendUnavailable, match=reason):
            await strategies.fetch()
    assert not strategies.health().up


async def test_http_error_status_is_a_failure(desk: Desk) -> None:
    async with serving(desk, {}) as ports:
        strategy = StrategyServiceBackend(
            address=f"http://127.0.0.1:{ports['strategies']}/elsewhere",
            policy=CallPolicy(**POLICY),
        )
        try:
            with pytest.raises(BackendUnavailable, match="HTTP 404"):
                await strategy.fetch()
        finally:
            await strategy.aclose()


async def test_invalid_strategies_are_dropped_and_counted(
    desk: Desk, backends_factory: Callable[..., list[Backend]]
) -> None:
    valid = desk.strategies()[0]
    body = orjson.dumps(
        {"strategies": [valid, {"id": "no-status"}, {"id": "bad id!", "status": "RUNNING"}, 7]}
    )
    async with serving(desk, {}, body=lambda: body) as ports:
        strategies = backends_factory(ports)[2]
        fetched = await strategies.fetch()
    assert records(fetched) == [valid]
    health = strategies.health()
    assert health.up
    assert health.rejected_records == 3


async def test_recovers_after_reset_when_the_server_comes_back(
    desk: Desk, backends_factory: Callable[..., list[Backend]]
) -> None:
    # given servers that ran once, then went away
    async with serving(desk, {}) as ports:
        backends = backends_factory(ports)
        for backend in backends:
            await backend.fetch()
    for backend in backends:
        for _ in range(2):
            with pytest.raises(BackendUnavailable):
                await backend.fetch()
        assert backend.health().breaker == "open"

    # when they come back on the same ports
    async with serving(desk, dict(ports)):
        # then each backend recovers once the breaker lets a trial call through
        for backend in backends:
            fetched = await poll_fetch(backend, within_s=5.0)
            assert fetched
            health = backend.health()
            assert health.up
            assert health.breaker == "closed"
            assert health.consecutive_failures == 0


async def poll_fetch(backend: Backend, *, within_s: float) -> list[Accepted]:
    """Fetch until it succeeds, at most `within_s` seconds (the breaker's reset is 0.5 s)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await backend.fetch()
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
