"""Metrics and readiness of the real processes (contract sections 5 and 6), scraped over HTTP
after real WebSocket traffic."""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection

from support.processes import ManagedProcess, free_port, wait_until
from tests.e2e.stack import Stack, connect, decode, receive, wait_quiet

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

WEB_FAMILIES = {
    "dashboard_connected_clients": {"client_type"},
    "dashboard_messages_sent": {"client_type", "message_type"},
    "dashboard_messages_received": {"message_type"},
    "dashboard_broadcast_latency_seconds": {"client_type"},
    "dashboard_serialization_duration_seconds": {"format"},
    "dashboard_message_size_bytes": {"format", "message_type"},
    "dashboard_client_subscriptions": {"channel"},
    "dashboard_active_connections": set(),
    "dashboard_resyncs": set(),
    "dashboard_kicks": set(),
    "django_http_requests_total_by_method": {"method"},
}
WORKER_FAMILIES = {
    "dashboard_ingest_messages": {"channel", "result"},
    "dashboard_state_update_lag_seconds": set(),
    "dashboard_backend_up": {"backend"},
    "dashboard_history_queue_depth": set(),
    "dashboard_worker_is_leader": set(),
}


def get(port: int, path: str) -> tuple[int, str]:
    """GET `path` on loopback: (status, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def scrape(port: int) -> tuple[dict[str, Any], Samples]:
    """The families of a metrics endpoint by name, and every sample by (name, labels)."""
    status, text = get(port, "/metrics")
    assert status == 200, text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    samples: Samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families.values()
        for sample in family.samples
    }
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def check_families(families: dict[str, Any], expected: dict[str, set[str]]) -> None:
    for name, label_names in expected.items():
        assert name in families, f"{name} missing"
        seen = {
            key
            for sample in families[name].samples
            for key in sample.labels
            if key not in ("le", "quantile")
        }
        assert seen == label_names, (name, seen)


def tick(stack: Stack, symbol: str, price: float) -> None:
    stack.publish("market_data", symbol, {"symbol": symbol, "last_price": price})


async def updates_until(ws: ClientConnection, seq: int) -> int:
    """Read update frames until one at `seq`; return how many arrived."""
    for count in range(1, 1000):
        frame = await receive(ws)
        assert frame["type"] == "update", frame
        if frame["seq"] >= seq:
            return count
    raise AssertionError("too many frames")


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int]]:
    """A worker serving its metrics on a free port, and one web process."""
    from django.conf import settings

    stack = Stack(redis_url=str(settings.CONFIG.redis_url), log_dir=tmp_path_factory.mktemp("obs"))
    metrics_port = free_port()
    try:
        stack.start_worker(DASHBOARD_WORKER_METRICS_PORT=str(metrics_port))
        stack.start_web()
        yield stack, metrics_port
    finally:
        stack.stop()


async def test_web_metrics_follow_the_traffic(observed: tuple[Stack, int]) -> None:
    stack, _ = observed
    port = stack.web_ports[0]
    tick(stack, "BTCUSDT", 1.0)
    tick(stack, "ETHUSDT", 1.0)
    wait_quiet(stack)
    _, before = scrape(port)
    async with (
        connect(stack.ws_url(port)) as web1,
        connect(stack.ws_url(port, channels="market_data,orders")) as web2,
        connect(
            stack.ws_url(port, type="tui", format="msgpack", channels="market_data:ETHUSDT")
        ) as tui,
    ):
        # given three clients with their snapshots
        for ws in (web1, web2, tui):
            assert (await receive(ws))["type"] == "snapshot"
        # when one sends a bad message and a ping, and the state moves
        await web1.send("{not json")
        assert (await receive(web1))["type"] == "error"
        await web1.send(json.dumps({"type": "ping"}))
        assert (await receive(web1)) == {"type": "pong"}
        tick(stack, "BTCUSDT", 2.0)
        wait_quiet(stack)
        tick(stack, "ETHUSDT", 2.0)
        seq = wait_quiet(stack)
        web_updates = await updates_until(web1, seq) + await updates_until(web2, seq)
        tui_updates = await updates_until(tui, seq)
        families, after = scrape(port)

        # then every family of contract 6 is there, with its labels
        check_families(families, WEB_FAMILIES)
        assert value(after, "dashboard_connected_clients", client_type="web") == 2
        assert value(after, "dashboard_connected_clients", client_type="tui") == 1
        assert value(after, "dashboard_active_connections") == 3
        assert value(after, "dashboard_client_subscriptions", channel="market_data") == 3
        assert value(after, "dashboard_client_subscriptions", channel="orders") == 2
        assert value(after, "dashboard_client_subscriptions", channel="account") == 1

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("dashboard_messages_received_total", message_type="invalid") == 1
        assert moved("dashboard_messages_received_total", message_type="ping") == 1
        assert moved("dashboard_messages_sent_total", client_type="web", message_type="error") == 1
        assert moved("dashboard_messages_sent_total", client_type="web", message_type="pong") == 1
        sent = "dashboard_messages_sent_total"
        assert moved(sent, client_type="web", message_type="snapshot") == 2
        assert moved(sent, client_type="tui", message_type="snapshot") == 1
        assert moved(sent, client_type="web", message_type="update") == web_updates
        assert moved(sent, client_type="tui", message_type="update") == tui_updates == 1
        # latency and size are observed once per event, whatever the number of clients
        assert moved("dashboard_broadcast_latency_seconds_count", client_type="web") >= 2
        assert moved("dashboard_message_size_bytes_count", format="msgpack", message_type="update")
        # the narrowed tui client's update was encoded here
        assert moved("dashboard_serialization_duration_seconds_count", format="msgpack") >= 2
        assert moved("django_http_responses_total_by_status_total", status="200") >= 1

    def all_gone() -> bool:
        _, samples = scrape(port)
        return value(samples, "dashboard_active_connections") == 0

    wait_until(all_gone, timeout=10, what="the connections to be counted out")
    _, final = scrape(port)
    assert value(final, "dashboard_connected_clients", client_type="web") == 0
    assert value(final, "dashboard_client_subscriptions", channel="market_data") == 0


def test_worker_metrics(observed: tuple[Stack, int]) -> None:
    stack, metrics_port = observed
    tick(stack, "SOLUSDT", 3.0)
    stack.publish("market_data", "SOLUSDT", {"symbol": "SOLUSDT", "last_price": "bad"})

    def counted() -> Samples | None:
        _, samples = scrape(metrics_port)
        channel = {"channel": "market_data"}
        applied = value(samples, "dashboard_ingest_messages_total", **channel, result="applied")
        rejected = value(
            samples, "dashboard_ingest_messages_total", **channel, result="invalid_field"
        )
        return samples if applied >= 1 and rejected >= 1 else None

    samples = wait_until(counted, timeout=10, what="the worker to count the ticks")
    families, _ = scrape(metrics_port)
    check_families(families, WORKER_FAMILIES)
    assert not set(WEB_FAMILIES) & set(families)  # each process exports its own
    assert isinstance(samples, dict)
    assert value(samples, "dashboard_worker_is_leader") == 1
    assert value(samples, "dashboard_backend_up", backend="order_service") == 0  # none runs
    assert value(samples, "dashboard_history_queue_depth") >= 0


def test_readiness_follows_the_worker(fresh_stack: Stack) -> None:
    # given a leader, a standby serving its own metrics, and a web process
    leader = fresh_stack.start_worker()
    standby_port = free_port()
    standby = fresh_stack.start(
        "run_aggregator", "standby", DASHBOARD_WORKER_METRICS_PORT=str(standby_port)
    )
    port = fresh_stack.start_web()

    def standby_metrics() -> Samples | None:
        try:
            return scrape(standby_port)[1]
        except OSError:
            return None

    samples = wait_until(standby_metrics, timeout=30, what="the standby's metrics")
    assert isinstance(samples, dict)
    assert value(samples, "dashboard_worker_is_leader") == 0

    def ready_status(expected: int) -> bool:
        status, body = get(port, "/health/ready")
        return status == expected and bool(orjson.loads(body)["checks"])

    wait_until(lambda: ready_status(200), timeout=10, what="ready")
    _, body = get(port, "/health/ready")
    checks = orjson.loads(body)["checks"]
    assert checks["worker"]["status"] == "up"
    assert set(checks["backends"]) == {"order_service", "account_service", "strategy_service"}

    # when every worker is gone (the standby stopped first, so that it does not take over)
    standby.terminate()
    started = time.monotonic()
    leader.kill()
    # then the heartbeat expires within a lease (3 s) and the process is not ready
    wait_until(lambda: ready_status(503), timeout=10, what="not ready")
    assert time.monotonic() - started < 8
    _, body = get(port, "/health/ready")
    assert orjson.loads(body)["checks"]["worker"]["status"] == "down"

    # when a worker is back, then ready again
    fresh_stack.start_worker("worker-2")
    wait_until(lambda: ready_status(200), timeout=15, what="ready again")


async def test_a_kick_is_counted(observed: tuple[Stack, int]) -> None:
    from channels_redis.pubsub import RedisPubSubChannelLayer

    from realtime.hub import kick_client

    stack, _ = observed
    port = stack.web_ports[0]
    _, before = scrape(port)
    async with connect(stack.ws_url(port, channels="account")) as ws:
        await receive(ws)

        def listed() -> str | None:
            for key in stack.redis.scan_iter(match=f"{stack.prefix}:presence:*", count=1000):
                for raw in stack.redis.hgetall(key).values():
                    entry = orjson.loads(raw)
                    if entry["subscriptions"] == ["account"]:  # not an earlier test's client
                        return str(entry["id"])
            return None

        client_id = wait_until(listed, timeout=10, what="the client in the presence list")
        layer = RedisPubSubChannelLayer(hosts=[stack.redis_url], prefix=f"{stack.prefix}.asgi")
        try:
            await kick_client(layer, prefix=stack.prefix, client_id=str(client_id))
        finally:
            await layer.flush()
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 4000
    _, after = scrape(port)
    assert value(after, "dashboard_kicks_total") - value(before, "dashboard_kicks_total") == 1
    assert value(after, "dashboard_client_subscriptions", channel="account") == 0


# --- promtool -----------------------------------------------------------------------------------


def promtool_check(text: str) -> str:
    """Run `promtool check metrics` on an exposition; fail unless it exits 0. Returns its lint."""
    promtool = shutil.which("promtool")
    # Not a skip: CI installs it (.ci/run, Debian's `prometheus` package), and a skipped check
    # would let a malformed exposition through unnoticed.
    assert promtool, "promtool is not installed: apt-get install prometheus (it provides promtool)"
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lint = result.stdout + result.stderr
    assert result.returncode == 0, lint
    return lint


async def test_live_scrapes_pass_promtool(observed: tuple[Stack, int]) -> None:
    stack, metrics_port = observed
    port = stack.web_ports[0]
    # given traffic, so that every labelled family has samples (histograms included)
    tick(stack, "BNBUSDT", 5.0)
    wait_quiet(stack)
    async with connect(stack.ws_url(port, type="tui", format="msgpack")) as ws:
        assert (await receive(ws))["type"] == "snapshot"
        await ws.send(json.dumps({"type": "ping"}))
        assert (await receive(ws)) == {"type": "pong"}
        tick(stack, "BNBUSDT", 6.0)
        await updates_until(ws, wait_quiet(stack))
        for metrics_of in (port, metrics_port):
            # when the real scrape goes through promtool, then it passes without a finding
            status, text = get(metrics_of, "/metrics")
            assert status == 200, text
            assert promtool_check(text) == ""


# --- the web.stats line -------------------------------------------------------------------------


def start_web_with(stack: Stack, name: str, **env: str) -> tuple[int, ManagedProcess]:
    """A web process with `env` added, once it answers; its port and process."""
    port = free_port()
    process = stack.start("serve", name, DASHBOARD_PORT=str(port), **env)

    def answers() -> bool:
        try:
            return get(port, "/health")[0] == 200
        except OSError:
            return not process.alive()

    wait_until(answers, timeout=60, what="the web process")
    assert process.alive(), process.output()[-3000:]
    return port, process


def stats_lines(process: ManagedProcess) -> list[dict[str, Any]]:
    """The process's `web.stats` log lines, oldest first."""
    return [
        json.loads(line)
        for line in process.output().splitlines()
        if '"web.stats"' in line and line.startswith("{")
    ]


def size(frame: str | bytes) -> int:
    return len(frame.encode()) if isinstance(frame, str) else len(frame)


async def test_the_web_stats_line_counts_the_traffic(fresh_stack: Stack) -> None:
    # given a web process logging its stats every second, and nothing else talking to it
    fresh_stack.start_worker()
    port, web = start_web_with(fresh_stack, "web", DASHBOARD_STATS_LOG_INTERVAL_S="1")
    tick(fresh_stack, "BTCUSDT", 1.0)
    tick(fresh_stack, "ETHUSDT", 1.0)
    wait_quiet(fresh_stack)
    received_bytes = 0
    web_updates = tui_updates = 0
    statuses = {"web": 0, "tui": 0}  # the status frames (contract 4.1) each client was sent

    async def next_frame(ws: ClientConnection, cadence: str) -> dict[str, Any]:
        """The next frame but a status, counting every frame's bytes."""
        nonlocal received_bytes
        while True:
            frame = await asyncio.wait_for(ws.recv(), 5)
            received_bytes += size(frame)
            decoded = decode(frame)
            if decoded["type"] != "status":
                return decoded
            statuses[cadence] += 1

    async with (
        connect(fresh_stack.ws_url(port)) as web1,
        connect(
            fresh_stack.ws_url(port, type="tui", format="msgpack", channels="market_data:ETHUSDT")
        ) as tui,
    ):
        # when the clients take their snapshots, one sends a bad frame and a ping, the state moves
        for ws, cadence in ((web1, "web"), (tui, "tui")):
            assert (await next_frame(ws, cadence))["type"] == "snapshot"
        await web1.send("{not json")
        await web1.send(json.dumps({"type": "ping"}))
        for expected in ("error", "pong"):
            assert (await next_frame(web1, "web"))["type"] == expected
        tick(fresh_stack, "BTCUSDT", 2.0)
        wait_quiet(fresh_stack)
        tick(fresh_stack, "ETHUSDT", 2.0)
        seq = wait_quiet(fresh_stack)
        for ws, cadence in ((web1, "web"), (tui, "tui")):
            while True:
                update = await next_frame(ws, cadence)
                assert update["type"] == "update", update
                web_updates += cadence == "web"
                tui_updates += cadence == "tui"
                if update["seq"] >= seq:
                    break

    def counted_out() -> bool:
        samples = scrape(port)[1]
        return value(samples, "dashboard_active_connections") == 0

    wait_until(counted_out, timeout=10, what="the connections to be counted out")
    logged = len(stats_lines(web))
    # the next line reads the counters after everything above
    wait_until(lambda: len(stats_lines(web)) > logged, timeout=10, what="a web.stats line")
    lines = stats_lines(web)

    # then the lines, summed from the process's start, count exactly that traffic
    def total(field: str) -> int:
        return sum(int(line[field]) for line in lines)

    def by_type(field: str) -> dict[str, int]:
        summed: dict[str, int] = {}
        for line in lines:
            for key, n in line[field].items():
                summed[key] = summed.get(key, 0) + n
        return summed

    assert tui_updates == 1
    sent = by_type("sent_by_type")
    # a periodic status may have been written after the test stopped reading: one at most each
    unread = {cadence: sent.pop(f"{cadence}:status", 0) - n for cadence, n in statuses.items()}
    assert all(0 <= n <= 1 for n in unread.values()), (unread, statuses)
    assert statuses["web"] >= 1
    assert statuses["tui"] >= 1
    assert sent == {
        "web:snapshot": 1,
        "web:error": 1,
        "web:pong": 1,
        "web:update": web_updates,
        "tui:snapshot": 1,
        "tui:update": tui_updates,
    }
    assert total("sent") == 4 + web_updates + tui_updates + sum(statuses.values()) + sum(
        unread.values()
    )
    status_bytes_max = 400  # a status frame is ~200 bytes; what may have gone unread
    assert 0 <= total("bytes_sent") - received_bytes <= status_bytes_max * sum(unread.values())
    assert by_type("received_by_type") == {"invalid": 1, "ping": 1}
    assert total("received") == 2
    assert (total("dropped"), total("resyncs"), total("kicks"), total("errors")) == (0, 0, 0, 0)
    assert total("updates_received") >= 2
    last = lines[-1]
    assert last["connections"] == {"web": 0, "tui": 0}
    assert last["level"] == "info"
    assert 0.5 <= last["interval_s"] <= 3
