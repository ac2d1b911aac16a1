"""Which stores get an embedded server (`embedded: auto|always|never`), steered at free ports.

The machine's own Redis and PostgreSQL stay untouched: "nothing answers at the default" is a
default pointed at a port where nothing listens (`Defaults`, where the settings' defaults live).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings

from dashboard_project.embedded import Defaults, embedded_stores, listens
from shared.config import Settings
from support.processes import ROOT, free_port

pytestmark = [pytest.mark.integration, pytest.mark.embedded]


@pytest.fixture
def unset_urls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No store URL configured, as on a new user's machine; embedded data under tmp_path."""
    for name in ("DASHBOARD_REDIS_URL", "DASHBOARD_DATABASE_URL", "DASHBOARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DASHBOARD_EMBEDDED_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_the_defaults_are_the_settings_defaults() -> None:
    assert Defaults() == Defaults(
        database_url="postgres://postgres@127.0.0.1:5432/dashboard",
        redis_url="redis://127.0.0.1:6379/0",
    )


def test_auto_starts_a_server_only_for_the_store_nothing_answers_for(
    unset_urls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_EMBEDDED", "auto")
    nothing_here = f"redis://127.0.0.1:{free_port()}/0"
    machine_postgres = str(settings.CONFIG.database_url)  # answers: used, no embedded server
    lines: list[str] = []
    with embedded_stores(
        Settings(),
        root=ROOT,
        defaults=Defaults(database_url=machine_postgres, redis_url=nothing_here),
        say=lines.append,
    ) as env:
        assert set(env) == {"DASHBOARD_REDIS_URL"}
        url = env["DASHBOARD_REDIS_URL"]
        assert url != nothing_here
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.close()
    assert lines == [
        f"no Redis on {urlsplit(nothing_here).netloc} — started an embedded Valkey 8.1.8 "
        f"(Redis-compatible) in {unset_urls / 'redis'} at {urlsplit(url).netloc}; "
        "set DASHBOARD_REDIS_URL to use yours"
    ]
    assert not listens(url), "the embedded server outlived its block"
    assert (unset_urls / "redis" / "valkey.db").is_file()  # saved for the next start


def test_never_starts_nothing(unset_urls: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_EMBEDDED", "never")
    nowhere = Defaults(
        database_url=f"postgres://postgres@127.0.0.1:{free_port()}/dashboard",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    with embedded_stores(Settings(), root=ROOT, defaults=nowhere, say=print) as env:
        assert env == {}
    assert not unset_urls.exists()


@pytest.mark.parametrize("mode", ["auto", "always"])
def test_an_explicit_url_never_falls_back(mode: str, unset_urls: Path) -> None:
    """A configured URL where nothing answers: today's message and exit 1, no embedded server."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    done = subprocess.run(
        [sys.executable, "scripts/preflight.py", "--", "true"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DASHBOARD_SECRET_KEY": "test-only-secret-key",
            "DASHBOARD_EMBEDDED": mode,
            "DASHBOARD_EMBEDDED_DIR": str(unset_urls),
            "DASHBOARD_REDIS_URL": dead,
            "DASHBOARD_DATABASE_URL": str(settings.CONFIG.database_url),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"preflight: Redis does not answer at {dead}" in done.stderr
    assert "embedded" not in done.stdout + done.stderr
    assert not unset_urls.exists()
