"""The shipped nginx (deploy/nginx/nginx.conf) in front of a test's web processes, on loopback.

The configuration is the shipped file with only what the test's machine differs in replaced:
the compose upstream names by the web processes' loopback ports, the listen port, and the
pid and temp paths by the test's own directory. Anything else the file says is what is tested.

In docker-compose nginx has an address of its own on the compose network; here it connects to
the web processes from a loopback address of its own (PROXY_ADDRESS, `proxy_bind`), and the web
processes get the proxy trust docker-compose.yml gives them, with nginx's compose address
mapped to that one.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import yaml

from support.processes import ROOT, free_port, wait_until
from tests.e2e.stack import Stack, _answers

NGINX = Path("/usr/sbin/nginx")
SHIPPED = ROOT / "deploy/nginx/nginx.conf"
PROXY_ADDRESS = "127.0.0.5"  # nginx's stand-in for its compose address
_DEFAULT_TRUST = "127.0.0.1"  # forwarded_allow_ips when compose sets none


def compose_web_environment() -> dict[str, str]:
    """What docker-compose.yml gives a web process that concerns the proxy, mapped to loopback.

    Its `DASHBOARD_FORWARDED_ALLOW_IPS` (the product default if it sets none) with nginx's
    compose address replaced by PROXY_ADDRESS.
    """
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = compose["services"]
    networks = services["nginx"].get("networks") or {}
    nginx_address = (networks.get("default") or {}).get("ipv4_address")
    trust = str(
        services["web1"]["environment"].get("DASHBOARD_FORWARDED_ALLOW_IPS", _DEFAULT_TRUST)
    )
    if nginx_address:
        trust = trust.replace(nginx_address, PROXY_ADDRESS)
    return {"DASHBOARD_FORWARDED_ALLOW_IPS": trust}


def adapted_config(*, listen_port: int, web_ports: list[int], prefix: Path) -> str:
    """The shipped configuration, pointing at `web_ports` and listening on `listen_port`."""
    text = SHIPPED.read_text(encoding="utf-8")
    servers = re.findall(r"server web\d+:8086", text)
    assert len(servers) == len(web_ports), f"the shipped upstream has {servers}"
    for server, port in zip(servers, web_ports, strict=True):
        text = text.replace(server, f"server 127.0.0.1:{port}")
    text, listens = re.subn(r"listen 8080;", f"listen 127.0.0.1:{listen_port};", text)
    assert listens == 1, "the shipped file no longer listens on 8080"
    text, https = re.subn(r"\nhttp \{\n", f"\nhttp {{\n    proxy_bind {PROXY_ADDRESS};\n", text)
    assert https == 1
    return text.replace("/tmp/nginx", str(prefix / "nginx"))


class Nginx:
    """nginx in the foreground (no daemon), with its own prefix; stopped by `stop()`."""

    def __init__(self, *, web_ports: list[int], prefix: Path) -> None:
        assert NGINX.exists(), "nginx must be installed (.ci/run installs nginx-light)"
        self.port = free_port()
        prefix.mkdir(parents=True, exist_ok=True)
        config = prefix / "nginx.conf"
        config.write_text(
            adapted_config(listen_port=self.port, web_ports=web_ports, prefix=prefix),
            encoding="utf-8",
        )
        self.log_path = prefix / "nginx.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(NGINX), "-p", str(prefix), "-c", str(config), "-e", "stderr", "-g", "daemon off;"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(
            lambda: _answers(self.port) or self.process.poll() is not None,
            timeout=30,
            what="nginx",
        )
        assert self.process.poll() is None, self.output()

    @property
    def url(self) -> str:
        """Where browsers and clients reach the deployment."""
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """What nginx has logged (errors and warnings)."""
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """Stop nginx (SIGQUIT would wait for open WebSockets; SIGTERM is the fast stop)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@contextlib.contextmanager
def proxied_deployment(log_dir: Path, **web_env: str) -> Iterator[tuple[Stack, Nginx]]:
    """A worker, two web processes (compose's proxy trust, plus `web_env`) behind nginx."""
    from django.conf import settings

    stack = Stack(redis_url=str(settings.CONFIG.redis_url), log_dir=log_dir)
    nginx: Nginx | None = None
    try:
        stack.start_worker()
        env = {**compose_web_environment(), **web_env}
        ports = [stack.start_web(f"web{n}", **env) for n in (1, 2)]
        nginx = Nginx(web_ports=ports, prefix=log_dir / "nginx")
        yield stack, nginx
    finally:
        if nginx is not None:
            nginx.stop()
        stack.stop()
