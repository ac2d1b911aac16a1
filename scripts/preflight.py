"""Check that Redis and PostgreSQL answer before starting anything; optionally create the database.

Run by `make run` and `make test`. On failure it says which service, where it looked and how to
start one, then exits non-zero. It reads the same settings as the product (config.yaml and
DASHBOARD_* environment variables).

With a command after `--` it first starts the embedded servers the `embedded` setting asks for
(dashboard_project.embedded), runs the command with DASHBOARD_*_URL pointing at them, and stops
them when the command ends (Ctrl-C reaches the command; the servers are stopped after it exits).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import redis
from psycopg import sql
from redis.sentinel import MasterNotFoundError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dashboard_project.embedded import embedded_stores
from shared.config import Settings
from shared.config_file import ConfigError
from shared.config_loading import load_settings
from shared.redis_clients import RedisTarget, sync_client

ROOT = Path(__file__).resolve().parent.parent

HOW_TO_START = (
    "start one with `docker compose up -d redis postgres`, or on Debian: "
    "`redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no` and "
    "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
)


def check_redis(target: RedisTarget) -> str | None:
    """Return None if Redis answers PING at `target`, else the problem."""
    try:
        client = sync_client(target, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except MasterNotFoundError:  # its text lists every sentinel client's whole repr
        return f"no sentinel answers with a master: {target.describe()}"
    except redis.RedisError as exc:
        return f"Redis does not answer at {target.describe()}: {exc}"
    return None


def check_postgres(url: str, *, create: bool) -> str | None:
    """Return None if PostgreSQL answers at `url` (creating its database if asked)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    dbname = str(info.get("dbname") or "postgres")
    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        if not create or f'database "{dbname}" does not exist' not in str(exc):
            return f"PostgreSQL does not answer at {url}: {str(exc).strip()}"
    admin_url = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    try:
        with psycopg.connect(admin_url, connect_timeout=3, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    except psycopg.Error as exc:
        return f"PostgreSQL at {url}: cannot create database {dbname!r}: {str(exc).strip()}"
    print(f"preflight: created database {dbname!r}")
    return None


def main() -> int:
    """Check both services (after starting embedded ones); run the command; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--create-database", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- a command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        config = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not command:
        return check(config, create=args.create_database)
    with contextlib.ExitStack() as stack:
        stack.callback(sys.stdout.flush)
        try:
            env = stack.enter_context(
                embedded_stores(config, root=ROOT, say=lambda line: print(f"preflight: {line}"))
            )
        except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
            problem = f"cannot start an embedded server: {_first_line(exc)}"
            print(f"preflight: {problem}", file=sys.stderr)
            return 1
        os.environ.update(env)
        status = check(load_settings(), create=args.create_database)  # with the embedded URLs
        return status or run(command)
    return 1  # not reached: the block returns


def check(config: Settings, *, create: bool) -> int:
    """Check both services; print every problem; return the exit code."""
    problems = [
        problem
        for problem in (
            check_redis(RedisTarget.from_settings(config)),
            check_postgres(str(config.database_url), create=create),
        )
        if problem
    ]
    for problem in problems:
        print(f"preflight: {problem}", file=sys.stderr)
    if problems:
        print(f"preflight: {HOW_TO_START}", file=sys.stderr)
        return 1
    return 0


def run(command: list[str]) -> int:
    """Run `command` to its end; its exit code.

    Ctrl-C and SIGTERM are the command's to handle (the terminal sends SIGINT to it too; SIGTERM
    is passed on), so that its processes stop before the servers they use.
    """
    child = subprocess.Popen(command)  # noqa: S603 (the Makefile's own command)
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM)),
    }
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _first_line(exc: BaseException) -> str:
    stderr = getattr(exc, "stderr", None)
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[-1]


if __name__ == "__main__":
    raise SystemExit(main())
