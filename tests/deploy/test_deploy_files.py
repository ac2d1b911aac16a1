"""The deployment files: no Docker engine runs here, so check what can be checked without one.

docker-compose.yml's structure (every product service runs a command that exists, two web
processes and two workers), nginx's configuration with `nginx -t`, and the Dockerfile's shape.
The topology itself runs as plain processes in tests/e2e.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {
    path.stem for path in ROOT.glob("*/management/commands/*.py") if not path.name.startswith("_")
} | {"migrate"}


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_the_whole_topology_with_existing_commands() -> None:
    services = compose()["services"]
    product = {
        name: s for name, s in services.items() if s.get("image", "").startswith("dashboard")
    }
    commands = {name: s["command"][2] for name, s in product.items()}
    assert set(commands.values()) <= COMMANDS, commands
    assert sorted(commands.values()).count("serve") == 2
    assert sorted(commands.values()).count("run_aggregator") == 2
    assert {"run_recorder", "simulate", "migrate"} <= set(commands.values())
    assert {"redis", "postgres", "nginx", "prometheus", "grafana"} <= set(services)
    for name, service in product.items():
        env = service["environment"]
        assert env["DASHBOARD_REDIS_URL"] == "redis://redis:6379/0", name
        assert env["DASHBOARD_SECRET_KEY"].startswith("${DASHBOARD_SECRET_KEY:?"), name


def test_compose_mounts_files_that_exist() -> None:
    for service in compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


def test_nginx_configuration_is_valid(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx must be installed (.ci/run installs nginx-light)"
    # The upstream names resolve inside compose only; nginx -t resolves them, so test a copy
    # pointing at loopback.
    text = (ROOT / "deploy/nginx/nginx.conf").read_text(encoding="utf-8")
    text = text.replace("server web1:", "server 127.0.0.1:").replace(
        "server web2:", "server [::1]:"
    )
    config = tmp_path / "nginx.conf"
    config.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [nginx, "-t", "-c", str(config), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Upgrade $http_upgrade" in text
    assert "proxy_read_timeout 120s" in text
    # the browser's Host with its port: CSRF and /ws origin checks compare Origin with it
    assert text.count("proxy_set_header Host $http_host") == 2
    assert "Host $host;" not in text


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2
    assert "\nUSER dashboard" in text
    assert "HEALTHCHECK" in text
    assert "/health" in text


def test_compose_opens_the_metrics_that_its_prometheus_scrapes() -> None:
    # The worker's and recorder's metrics listen on loopback unless configured; Prometheus
    # scrapes them from its own container, so compose must open exactly those up.
    services = compose()["services"]
    scrape = yaml.safe_load(
        (ROOT / "deploy/prometheus/prometheus.compose.yml").read_text(encoding="utf-8")
    )
    targets = {
        target.split(":")[0]
        for job in scrape["scrape_configs"]
        if job["job_name"] != "dashboard-web"  # the web port is bind_host's, with /metrics
        for config in job["static_configs"]
        for target in config["targets"]
    }
    assert targets >= {"worker1", "worker2", "recorder"}
    for name in targets:
        assert services[name]["environment"]["DASHBOARD_METRICS_BIND_HOST"] == "0.0.0.0", name  # noqa: S104
    for name, service in services.items():
        if name not in targets and service.get("image", "").startswith("dashboard"):
            assert "DASHBOARD_METRICS_BIND_HOST" not in service.get("environment", {}), name


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (its last match wins)."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, f"{pattern}/*"):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_development_secrets_out_of_the_image() -> None:
    # Every `.dev-…` file the product writes (the dev secret key, the demo admin's password)
    # and any later one; the image is built from the work tree, where `make run` leaves them.
    sources = [ROOT / "Makefile", *ROOT.glob("*/management/commands/*.py")]
    written = {
        name
        for path in sources
        for name in re.findall(r"\.dev-[a-z-]+", path.read_text(encoding="utf-8"))
    } | {".dev-anything-new"}
    assert {".dev-secret-key", ".dev-admin-password"} <= written
    assert [name for name in sorted(written) if not dockerignored(name)] == []
    assert not dockerignored("manage.py")
