"""The alerting rules and the Grafana dashboard name only metrics that the processes export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from aggregation import metrics as worker_metrics
from history import metrics as recorder_metrics
from realtime import metrics as web_metrics

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
_NAME = re.compile(r"\bdashboard_[a-z_]+")
_SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def exported() -> set[str]:
    names: set[str] = set()
    for module in (web_metrics, worker_metrics, recorder_metrics):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                names.update(metric.name for metric in value.describe())
    return names


def base_name(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def expressions() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((ROOT / "deploy/grafana/dashboard.json").read_text(encoding="utf-8"))
    found += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return found


def test_rules_and_dashboard_name_exported_metrics() -> None:
    known = exported()
    for expr in expressions():
        for name in _NAME.findall(expr):
            assert name in known or base_name(name) in known, (name, expr)


def test_every_contract_metric_is_exported() -> None:
    contract = {
        "dashboard_connected_clients",
        "dashboard_messages_sent",
        "dashboard_messages_received",
        "dashboard_broadcast_latency_seconds",
        "dashboard_serialization_duration_seconds",
        "dashboard_message_size_bytes",
        "dashboard_client_subscriptions",
        "dashboard_active_connections",
        "dashboard_ingest_messages",
        "dashboard_state_update_lag_seconds",
        "dashboard_backend_up",
        "dashboard_history_rows_written",
        "dashboard_history_queue_depth",
        "dashboard_worker_is_leader",
    }
    assert contract <= exported()


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus.compose.yml"])
def test_promtool_accepts_the_configuration(name: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool must be installed (.ci/run installs prometheus)"
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
