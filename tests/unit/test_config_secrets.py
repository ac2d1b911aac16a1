"""A configuration error names the key and the problem, never a password or the secret key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_config import _manage

SECRET = "s3cr3t-Pa55"  # what must never reach stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DASHBOARD_DATABASE_URL", f"postgres://u:{SECRET}@h:bad/db"),  # a bad port
        ("DASHBOARD_DATABASE_URL", f"mysql://u:{SECRET}@h/db"),  # a bad scheme
        ("DASHBOARD_DATABASE_URL", f"postgres://u:{SECRET}@h:99999/db"),  # port out of range
        ("DASHBOARD_REDIS_URL", f"redis://:{SECRET}@h:bad/0"),
        ("DASHBOARD_REDIS_URL", f"http://default:{SECRET}@h:6379/0"),
    ],
)
def test_a_bad_url_is_named_without_its_password(name: str, value: str) -> None:
    result = _manage({"DASHBOARD_SECRET_KEY": "k", name: value}, "check")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"invalid configuration: {name} (environment): ")
    assert SECRET not in result.stderr + result.stdout
    assert "***" in line  # the value is shown with its password masked


def test_a_bad_url_in_the_yaml_file_is_named_without_its_password(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"database_url: postgres://u:{SECRET}@h:bad/db\n", encoding="utf-8")
    result = _manage({"DASHBOARD_SECRET_KEY": "k", "DASHBOARD_CONFIG": str(path)}, "check")
    assert result.returncode == 2
    assert "database_url" in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_the_secret_key_is_never_echoed(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"secret_key: [{SECRET}]\n", encoding="utf-8")  # a list: the wrong type
    result = _manage({"DASHBOARD_CONFIG": str(path)}, "check")
    assert result.returncode == 2
    assert "secret_key" in result.stderr
    assert SECRET not in result.stderr + result.stdout
