"""The Redis setting's two shapes: one URL, or sentinels and a master name (no server needed)."""

from __future__ import annotations

import pytest

from shared.config_file import ConfigError
from shared.config_loading import load_settings
from shared.redis_clients import RedisTarget, channel_layer_host
from tests.unit.test_config import clean_env  # noqa: F401  # autouse: no DASHBOARD_* but a key


def test_the_url_shape_is_the_default() -> None:
    target = RedisTarget.from_settings(load_settings())
    assert target == RedisTarget(url="redis://127.0.0.1:6379/0")
    assert channel_layer_host(target, max_connections=7) == {
        "address": "redis://127.0.0.1:6379/0",
        "max_connections": 7,
    }


def test_sentinels_from_env_are_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_REDIS_SENTINELS", "10.0.0.1:26379, sentinel-b:26380,[::1]:26381")
    monkeypatch.setenv("DASHBOARD_REDIS_MASTER_NAME", "desk")
    monkeypatch.setenv("DASHBOARD_REDIS_PASSWORD", "data-secret")
    monkeypatch.setenv("DASHBOARD_REDIS_SENTINEL_PASSWORD", "sentinel-secret")
    target = RedisTarget.from_settings(load_settings())
    assert target.sentinels == (("10.0.0.1", 26379), ("sentinel-b", 26380), ("::1", 26381))
    assert (target.master_name, target.password) == ("desk", "data-secret")
    host = channel_layer_host(target, socket_timeout=None)
    assert host["master_name"] == "desk"
    assert host["sentinels"] == list(target.sentinels)
    assert host["password"] == "data-secret"
    assert host["sentinel_kwargs"]["password"] == "sentinel-secret"
    assert host["socket_timeout"] is None
    assert "secret" not in target.describe()


def test_with_sentinels_the_url_gives_only_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_REDIS_SENTINELS", "a:26379")
    monkeypatch.setenv("DASHBOARD_REDIS_MASTER_NAME", "desk")
    monkeypatch.setenv("DASHBOARD_REDIS_URL", "redis://unused:6379/4")
    target = RedisTarget.from_settings(load_settings())
    assert (target.url, target.db, target.sentinels) == ("", 4, (("a", 26379),))
    assert channel_layer_host(target)["db"] == 4


def test_an_empty_sentinel_list_means_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_REDIS_SENTINELS", "")  # what compose passes when unset
    monkeypatch.setenv("DASHBOARD_REDIS_MASTER_NAME", "")
    assert RedisTarget.from_settings(load_settings()).url == "redis://127.0.0.1:6379/0"


def test_a_url_with_a_password_is_described_without_it() -> None:
    assert RedisTarget(url="redis://:hunter2@redis:6379/0").describe() == "redis:6379/0"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DASHBOARD_REDIS_SENTINELS": "a:26379"}, "redis_master_name: required with"),
        ({"DASHBOARD_REDIS_SENTINELS": "a"}, "DASHBOARD_REDIS_SENTINELS (environment): 'a' is"),
        ({"DASHBOARD_REDIS_SENTINELS": "a:0"}, "'a:0' is not host:port"),
        ({"DASHBOARD_REDIS_SENTINELS": "a:70000"}, "'a:70000' is not host:port"),
        ({"DASHBOARD_REDIS_SENTINELS": ":26379"}, "':26379' is not host:port"),
        ({"DASHBOARD_REDIS_SENTINELS": "a:-1"}, "'a:-1' is not host:port"),
        ({"DASHBOARD_REDIS_SENTINELS": "a:2x"}, "'a:2x' is not host:port"),
        ({"DASHBOARD_REDIS_MASTER_NAME": "desk;FLUSHALL"}, "DASHBOARD_REDIS_MASTER_NAME"),
        ({"DASHBOARD_REDIS_MASTER_NAME": "x" * 65}, "DASHBOARD_REDIS_MASTER_NAME"),
    ],
)
def test_bad_sentinel_settings_name_the_problem(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)
