"""The earlier service's runbook settings (docs/MIGRATING.md): its values and its nested YAML."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest

from dashboard_project import __version__
from shared.config_file import ConfigError
from shared.config_loading import load_settings
from shared.legacy_yaml import go_duration_s, translate_legacy
from shared.logconfig import JsonFormatter

ROOT = Path(__file__).resolve().parents[2]

# The earlier service's config.yaml, as its audit documents it ("config.yaml Structure").
SEED_YAML = """\
server:
  port: 8086
  log_level: info
  shutdown_timeout: 30s

redis:
  url: localhost:6379
  db: 0
  pool_size: 10

websocket:
  read_buffer_size: 1024
  write_buffer_size: 4096
  ping_interval: 30s
  read_timeout: 60s
  write_timeout: 10s

broadcast:
  tui_interval: 100ms
  web_interval: 250ms

backend_services:
  market_data:
    url: localhost:8080
    timeout: 5s
  order_execution:
    url: localhost:8081
    timeout: 5s
  account_monitor:
    url: localhost:8084
    timeout: 5s
  strategy_engine:
    url: localhost:8082
    timeout: 5s
  risk_manager:
    url: localhost:9095
    timeout: 5s
"""


@pytest.fixture
def yaml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Write a config.yaml and point DASHBOARD_CONFIG at it; nothing else configured."""
    for name in ("DASHBOARD_REDIS_URL", "DASHBOARD_DATABASE_URL", "DASHBOARD_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DASHBOARD_SECRET_KEY", "k")

    def write(text: str) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(text, encoding="utf-8")
        monkeypatch.setenv("DASHBOARD_CONFIG", str(path))
        return path

    return write


@pytest.mark.parametrize(
    ("given", "level"),
    [
        ("debug", "DEBUG"),
        ("Debug", "DEBUG"),
        ("info", "INFO"),
        ("warn", "WARNING"),
        ("WARN", "WARNING"),
        ("error", "ERROR"),
        (" INFO ", "INFO"),
    ],
)
def test_log_level_in_any_case(given: str, level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_LOG_LEVEL", given)
    assert load_settings().log_level == level


def test_a_wrong_log_level_still_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError, match=r"DASHBOARD_LOG_LEVEL \(environment\)"):
        load_settings()


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("localhost:6379", "redis://localhost:6379"),
        ("127.0.0.1:6380/2", "redis://127.0.0.1:6380/2"),
        ("redis://h:1/0", "redis://h:1/0"),
    ],
)
def test_redis_url_without_a_scheme(given: str, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_REDIS_URL", given)
    assert str(load_settings().redis_url) == url


def test_other_schemes_are_still_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_REDIS_URL", "http://localhost:6379")
    with pytest.raises(ConfigError, match="DASHBOARD_REDIS_URL"):
        load_settings()


def test_unprefixed_names_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """LOG_LEVEL, REDIS_URL belong to whatever else runs; the runbook sets DASHBOARD_* ones."""
    monkeypatch.delenv("DASHBOARD_LOG_LEVEL", raising=False)
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("PORT", "9999")
    config = load_settings()
    assert (config.log_level, config.port) == ("INFO", 8086)


def test_the_earlier_services_config_yaml_maps_onto_ours(
    yaml_file, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    path = yaml_file(SEED_YAML)
    config = load_settings()
    assert config.port == 8086
    assert config.log_level == "INFO"
    assert config.shutdown_timeout_s == 30.0
    assert str(config.redis_url) == "redis://localhost:6379/0"
    assert (config.ws_ping_interval_s, config.ws_idle_timeout_s, config.ws_write_timeout_s) == (
        30.0,
        60.0,
        10.0,
    )
    assert (config.tui_interval_ms, config.web_interval_ms) == (100, 250)
    assert config.backend_timeout_s == 5.0
    assert str(config.order_service_grpc) == "localhost:50051"  # its yaml URLs were never read
    notices = capsys.readouterr().err.splitlines()
    assert all(line.startswith(f"config: {path}: ") for line in notices)
    assert f"config: {path}: server.port -> port: 8086" in notices
    assert f"config: {path}: redis.url -> redis_url: 'redis://localhost:6379/0'" in notices
    assert f"config: {path}: broadcast.web_interval -> web_interval_ms: 250" in notices
    # One line per key of the file (the five backend timeouts share one).
    assert len(notices) == 3 + 2 + 5 + 2 + 5 + 1


def test_the_runbooks_option_2(yaml_file) -> None:  # type: ignore[no-untyped-def]
    yaml_file("server:\n  port: 8087\n  log_level: debug\n")
    config = load_settings()
    assert (config.port, config.log_level) == (8087, "DEBUG")
    assert {"port", "log_level"} <= config.model_fields_set


def test_the_environment_still_wins_over_nested_yaml(  # type: ignore[no-untyped-def]
    yaml_file, monkeypatch: pytest.MonkeyPatch
) -> None:
    yaml_file("server:\n  port: 8087\n")
    monkeypatch.setenv("DASHBOARD_PORT", "8088")
    assert load_settings().port == 8088


def test_a_flat_key_wins_over_its_nested_twin(yaml_file, capsys) -> None:  # type: ignore[no-untyped-def]
    path = yaml_file("port: 8090\nserver:\n  port: 8087\n")
    assert load_settings().port == 8090
    assert f"config: {path}: server.port: ignored, port is set" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server:\n  nope: 1\n", r"server\.nope \(.*\): unknown setting"),
        ("server:\n  shutdown_timeout: 30x\n", r"shutdown_timeout_s .*'30x'"),
        ("server:\n  port: 70000\n", r"port .*70000"),
        ("broadcast:\n  web_interval: -5ms\n", r"web_interval_ms"),
        ("backend_services:\n  order_execution: 5\n", r"backend_services\.order_execution"),
        ("server: [1, 2]\n", r"server .*unknown setting"),
    ],
)
def test_bad_nested_values_name_the_key(yaml_file, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    yaml_file(text)
    with pytest.raises(ConfigError, match=message):
        load_settings()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("250ms", 0.25), ("1m30s", 90.0), ("1.5h", 5400.0), ("100us", 1e-4)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert go_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "s", "30 s", "-1s", "1d", "30s!"])
def test_not_go_durations_are_left_for_validation(text: str) -> None:
    assert go_duration_s(text) == text


def test_redis_db_without_url_and_a_url_with_its_own_db() -> None:
    assert translate_legacy({"redis": {"db": 3}})[0] == {"redis_url": "redis://127.0.0.1:6379/3"}
    assert translate_legacy({"redis": {"url": "redis://h:1/2", "db": 3}})[0] == {
        "redis_url": "redis://h:1/2"
    }


def test_log_levels_are_written_in_lower_case() -> None:
    formatter = JsonFormatter("%(levelname)s %(message)s", rename_fields={"levelname": "level"})
    for level, name in [
        (logging.DEBUG, "debug"),
        (logging.WARNING, "warn"),
        (logging.CRITICAL, "critical"),
    ]:
        record = logging.LogRecord("x", level, __file__, 1, "m", None, None)
        assert f'"level": "{name}"' in formatter.format(record)


def test_the_logged_version_is_pyprojects() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert __version__ == project["version"]
