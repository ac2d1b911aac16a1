"""The earlier service's nested config.yaml (`server: {port: …}`, `redis: {url: …}`, …) in ours.

`translate_legacy` maps each nested key onto our flat setting (docs/MIGRATING.md has the table),
converting Go durations ("30s", "250ms") to our units, and says so in one notice per key. Keys it
has no use for are dropped with a notice saying why; an unknown key inside a legacy section is
kept as `section.key`, which validation then refuses as an unknown setting. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

LEGACY_SECTIONS = ("server", "redis", "websocket", "broadcast", "backend_services")

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration_s(value: Any) -> Any:
    """A Go duration string ("1m30s", "250ms") in seconds; anything else unchanged."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return value  # not a duration: validation names the setting and the value
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)


def _seconds(value: Any) -> Any:
    return go_duration_s(value)


def _milliseconds(value: Any) -> Any:
    seconds = go_duration_s(value)
    if seconds is value:
        return value
    return round(seconds * 1000)


def _same(value: Any) -> Any:
    return value


# (section, key) -> (our setting, conversion); None: no use for it, and why.
_MAP: dict[tuple[str, str], tuple[str, Callable[[Any], Any]] | str] = {
    ("server", "port"): ("port", _same),
    ("server", "log_level"): ("log_level", _same),
    ("server", "shutdown_timeout"): ("shutdown_timeout_s", _seconds),
    ("redis", "url"): ("redis_url", _same),
    ("redis", "pool_size"): "not used: the Redis clients size their own pools",
    ("websocket", "read_buffer_size"): "not used: frames are limited by ws_max_message_bytes",
    ("websocket", "write_buffer_size"): "not used: the server sizes its own write buffers",
    ("websocket", "ping_interval"): ("ws_ping_interval_s", _seconds),
    ("websocket", "read_timeout"): ("ws_idle_timeout_s", _seconds),
    ("websocket", "write_timeout"): ("ws_write_timeout_s", _seconds),
    ("broadcast", "tui_interval"): ("tui_interval_ms", _milliseconds),
    ("broadcast", "web_interval"): ("web_interval_ms", _milliseconds),
}
_BACKEND_URLS = {
    "order_execution": "order_service_grpc",
    "account_monitor": "account_service_grpc",
    "strategy_engine": "strategy_service_http",
}


def translate_legacy(loaded: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`loaded` with the earlier service's sections flattened onto our settings; the notices.

    A setting given both flat and nested keeps the flat (our) value.
    """
    flat = {key: value for key, value in loaded.items() if not _is_legacy(key, value)}
    notices: list[str] = []

    def put(source: str, setting: str, value: Any) -> None:
        if setting in flat:
            notices.append(f"{source}: ignored, {setting} is set")
            return
        flat[setting] = value
        notices.append(f"{source} -> {setting}: {value!r}")

    for section in LEGACY_SECTIONS:
        entries = loaded.get(section)
        if not _is_legacy(section, entries):
            continue
        assert isinstance(entries, dict)
        if section == "backend_services":
            _backends(entries, put, notices, flat)
            continue
        if section == "redis" and "db" in entries:
            entries = dict(entries)
            entries["url"] = _with_db(entries.get("url"), entries.pop("db"))
        for key, value in entries.items():
            source = f"{section}.{key}"
            target = _MAP.get((section, str(key)))
            if target is None:
                flat[source] = value  # refused by validation as an unknown setting
            elif isinstance(target, str):
                notices.append(f"{source}: {target}")
            else:
                put(source, target[0], target[1](value))
    return flat, notices


def _is_legacy(key: str, value: Any) -> bool:
    return key in LEGACY_SECTIONS and isinstance(value, dict)


def _with_db(url: Any, db: Any) -> Any:
    """The earlier service's `redis.url` (host:port) and `redis.db` as one URL."""
    if url is None:
        url = "127.0.0.1:6379"
    if not isinstance(url, str):
        return url
    address = url if "://" in url else f"redis://{url}"
    scheme, _, rest = address.partition("://")
    if "/" in rest:
        return address  # the URL names its database already
    return f"{scheme}://{rest}/{db}"


def _backends(
    entries: dict[str, Any],
    put: Callable[[str, str, Any], None],
    notices: list[str],
    flat: dict[str, Any],
) -> None:
    """backend_services.*: the timeouts become backend_timeout_s (the longest); no URL is used.

    The earlier service never read these URLs (its backends came from DASHBOARD_* variables and
    defaults): pointing ours at them would change where it connects.
    """
    timeouts: list[tuple[str, Any]] = []
    for name, backend in entries.items():
        if not isinstance(backend, dict):
            flat[f"backend_services.{name}"] = backend
            continue
        for key, value in backend.items():
            source = f"backend_services.{name}.{key}"
            if key == "timeout":
                timeouts.append((source, _seconds(value)))
            elif key == "url":
                ours = _BACKEND_URLS.get(str(name))
                hint = f"; set {ours}" if ours else ", no such backend here"
                notices.append(f"{source}: not used (the earlier service did not read it{hint})")
            else:
                flat[source] = value
    numbers = [value for _, value in timeouts if isinstance(value, int | float)]
    if timeouts:
        longest = max(numbers) if len(numbers) == len(timeouts) else timeouts[0][1]
        put(", ".join(source for source, _ in timeouts), "backend_timeout_s", longest)
