"""Labelled metric children bound once (shared.metric_children) and the metrics built on them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

from shared.metric_children import Children


def test_a_child_is_bound_on_first_use_and_is_the_metrics_own() -> None:
    registry = CollectorRegistry()
    frames = Counter("frames", "frames", ["cadence", "type"], registry=registry)
    codes = Counter("codes", "codes", ["code"], registry=registry)
    by_pair: Children[Counter] = Children(frames)
    by_code: Children[Counter] = Children(codes)
    assert by_pair["web", "update"] is frames.labels("web", "update")
    assert by_pair["web", "update"] is by_pair["web", "update"]
    assert by_code["4401"] is codes.labels("4401")
    by_pair["web", "update"].inc(3)
    by_code["4401"].inc()
    scrape = generate_latest(registry).decode()
    assert 'frames_total{cadence="web",type="update"} 3.0' in scrape
    assert 'codes_total{code="4401"} 1.0' in scrape


def test_the_access_metrics_show_their_labels_before_any_traffic_and_count_through_them() -> None:
    from prometheus_client import REGISTRY

    from access import metrics

    before = REGISTRY.get_sample_value("dashboard_ws_refused_total", {"code": "4403"})
    assert before is not None  # exported at import, before any refusal
    metrics.refused(4403)
    metrics.auth_failed("ws")
    after = REGISTRY.get_sample_value("dashboard_ws_refused_total", {"code": "4403"})
    assert after == before + 1
    assert REGISTRY.get_sample_value("dashboard_auth_failures_total", {"entry": "ws"})
