"""Configuration: defaults < config.yaml < DASHBOARD_* env; bad values stop start-up clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import Settings
from shared.config_file import ConfigError
from shared.config_loading import load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every test from no DASHBOARD_* variables but a secret key."""
    for name in list(os.environ):
        if name.startswith("DASHBOARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DASHBOARD_SECRET_KEY", "k")


def write_yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_match_the_contract() -> None:
    config = load_settings()
    assert config.port == 8086
    assert (config.web_interval_ms, config.tui_interval_ms) == (250, 100)
    assert config.refresh_period_s == 30
    assert config.max_orders == 100
    assert config.history_stream_maxlen == 1_000_000
    assert config.worker_metrics_port == 9108
    assert config.order_service_grpc == "localhost:50051"
    assert config.account_service_grpc == "localhost:50055"
    assert str(config.strategy_service_http) == "http://localhost:8082/"
    assert config.ws_max_message_bytes == 4096


def test_yaml_overrides_defaults_and_env_overrides_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "DASHBOARD_CONFIG", write_yaml(tmp_path, "port: 9000\nweb_interval_ms: 500\n")
    )
    assert (load_settings().port, load_settings().web_interval_ms) == (9000, 500)
    monkeypatch.setenv("DASHBOARD_PORT", "9100")
    assert (load_settings().port, load_settings().web_interval_ms) == (9100, 500)


def test_allowed_hosts_from_env_is_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_ALLOWED_HOSTS", "a.example, b.example")
    assert load_settings().allowed_hosts == ["a.example", "b.example"]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DASHBOARD_PORT", "abc", "DASHBOARD_PORT (environment): Input should be a valid integer"),
        ("DASHBOARD_PORT", "70000", "DASHBOARD_PORT (environment): Input should be less than"),
        ("DASHBOARD_PORT", "0", "DASHBOARD_PORT (environment): Input should be greater than"),
        ("DASHBOARD_WEB_INTERVAL_MS", "-5", "DASHBOARD_WEB_INTERVAL_MS (environment)"),
        ("DASHBOARD_LOG_LEVEL", "LOUD", "DASHBOARD_LOG_LEVEL (environment)"),
        ("DASHBOARD_REDIS_URL", "http://x", "DASHBOARD_REDIS_URL (environment): must be a redis"),
        ("DASHBOARD_DATABASE_URL", "nope", "DASHBOARD_DATABASE_URL (environment)"),
        ("DASHBOARD_MAX_ORDERS", "1.5", "DASHBOARD_MAX_ORDERS (environment)"),
        ("DASHBOARD_DEBUG", "perhaps", "DASHBOARD_DEBUG (environment)"),
    ],
)
def test_bad_env_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("port: high\n", "port ("),
        ("tui_interval_ms: 0\n", "tui_interval_ms ("),
        ("prot: 8086\n", "prot ("),
        ("web_interval_ms: [1, 2]\n", "web_interval_ms ("),
        ("- just\n- a list\n", "must hold a mapping"),
        ("port: [unclosed\n", "is not valid YAML"),
    ],
)
def test_bad_yaml_values_name_the_key_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, expected: str
) -> None:
    path = write_yaml(tmp_path, text)
    monkeypatch.setenv("DASHBOARD_CONFIG", path)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unknown_yaml_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_CONFIG", write_yaml(tmp_path, "prot: 8086\n"))
    with pytest.raises(ConfigError, match=r"prot .*unknown setting"):
        load_settings()


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_CONFIG", "/nonexistent/config.yaml")
    with pytest.raises(ConfigError, match="DASHBOARD_CONFIG: no such file"):
        load_settings()


def test_secret_key_is_required_unless_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHBOARD_SECRET_KEY")
    with pytest.raises(ConfigError, match="secret_key: required unless debug"):
        load_settings()
    monkeypatch.setenv("DASHBOARD_DEBUG", "1")
    assert load_settings().effective_secret_key


def test_lease_renewal_must_be_shorter_than_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_LEADER_RENEW_MS", "5000")
    with pytest.raises(
        ConfigError,
        match=r"DASHBOARD_LEADER_RENEW_MS \(environment\): must be shorter than leader_lease_ms",
    ):
        load_settings()


def test_the_standby_buffer_must_outlast_the_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_LEADER_LEASE_MS", "10000")
    monkeypatch.setenv("DASHBOARD_STANDBY_BUFFER_S", "10.5")
    with pytest.raises(ConfigError, match=r"STANDBY_BUFFER_S \(environment\): must exceed leader_"):
        load_settings()
    monkeypatch.setenv("DASHBOARD_STANDBY_BUFFER_S", "11")
    assert load_settings().standby_buffer_s == 11
    monkeypatch.setenv("DASHBOARD_STANDBY_BUFFER_S", "3601")
    with pytest.raises(ConfigError, match="STANDBY_BUFFER_S"):
        load_settings()


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_CONFIG", str(ROOT / "config.example.yaml"))
    assert load_settings().port == 8086


def test_every_setting_is_in_the_example_config() -> None:
    text = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    missing = [name for name in Settings.model_fields if f"{name}:" not in text]
    assert missing == []


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_start_up_stops_with_one_line_and_exit_code_2() -> None:
    result = _manage({"DASHBOARD_SECRET_KEY": "k", "DASHBOARD_PORT": "abc"}, "check")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "invalid configuration: DASHBOARD_PORT (environment): Input should be a valid integer, "
        "unable to parse string as an integer (got 'abc')"
    ]


def test_logs_are_json_lines_at_the_configured_level() -> None:
    code = (
        "import logging, django; django.setup(); "
        "logging.getLogger('x').debug('hidden'); "
        "logging.getLogger('x').warning('shown', extra={'count': 3})"
    )
    env = {
        "PATH": os.environ["PATH"],
        "DASHBOARD_SECRET_KEY": "k",
        "DASHBOARD_LOG_LEVEL": "INFO",
        "DJANGO_SETTINGS_MODULE": "dashboard_project.settings",
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in result.stderr.strip().splitlines()]
    assert len(lines) == 1
    assert lines[0]["message"] == "shown"
    assert lines[0]["level"] == "warn"  # lower case, as the earlier service wrote it
    assert lines[0]["logger"] == "x"
    assert lines[0]["count"] == 3
    assert "time" in lines[0]


@pytest.mark.parametrize(
    ("setting", "value"),
    [("redis_key_prefix", "dashboard\n"), ("input_prefix", "desk:\n")],
)
def test_key_prefixes_refuse_a_trailing_newline(setting: str, value: str) -> None:
    with pytest.raises(ValueError, match=setting):
        Settings(**{setting: value})


def test_csrf_trusted_origins_are_comma_separated_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_CSRF_TRUSTED_ORIGINS", "https://desk.example, http://h:8080")
    assert load_settings().csrf_trusted_origins == ["https://desk.example", "http://h:8080"]
    for bad in ("desk.example", "https://desk.example/login", "ftp://desk.example"):
        monkeypatch.setenv("DASHBOARD_CSRF_TRUSTED_ORIGINS", bad)
        with pytest.raises(ConfigError, match="DASHBOARD_CSRF_TRUSTED_ORIGINS"):
            load_settings()
