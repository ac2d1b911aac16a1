"""A Redis master, a replica and three sentinels on loopback free ports, for failover tests."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import redis

from support.processes import free_port, wait_until

MASTER_NAME = "desk"
# Tuned down for the test so that a failover takes ~2 s instead of ~6 s; production keeps the
# defaults' order of magnitude (docs/OPERATIONS.md, "Redis high availability"): a sentinel
# calls a master down after this long without a valid reply...
DOWN_AFTER_MS = 1000
# ...and a failover that stalls is retried by another sentinel after this long.
FAILOVER_TIMEOUT_MS = 5000
QUORUM = 2  # two of three sentinels agree the master is down: survives losing any one

BIND_ATTEMPTS = 3  # ports a node tries when the one it chose was taken before it bound it


class RedisNode:
    """One redis-server (data node or sentinel) on a free loopback port, its log in `workdir`."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.port = free_port()
        self.name = name
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str, binary: str = "redis-server") -> None:
        """Start `binary` with `args` on this node's port; wait until it answers as itself.

        A port `free_port` chose can be taken before the server binds it (by any socket of the
        machine's in the meantime): then the server exits saying so, and it starts again on
        another port, up to `BIND_ATTEMPTS` times. Any other exit fails at once, with its log.
        """
        server = shutil.which(binary)
        assert server, f"{binary} must be installed (.ci/run installs it)"
        for _ in range(BIND_ATTEMPTS):
            (self.workdir / "redis.log").unlink(missing_ok=True)
            with (self.workdir / "console.log").open("wb") as console:  # before the log opens
                self.process = subprocess.Popen(
                    [server, *args, "--port", str(self.port), "--logfile", "redis.log"],
                    cwd=self.workdir,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                )
            wait_until(self._up_or_exited, timeout=20, what=f"redis {self.name}")
            if self.process.poll() is None:
                return
            if "Address already in use" not in self.log_tail():
                raise AssertionError(f"redis {self.name} exited:\n{self.log_tail()}")
            self.port = free_port()
        raise AssertionError(f"redis {self.name} found no free port in {BIND_ATTEMPTS} tries")

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines of what this node wrote: its console, then its log."""
        text = ""
        for name in ("console.log", "redis.log"):
            with contextlib.suppress(FileNotFoundError):
                text += (self.workdir / name).read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(nothing written)"

    def _up_or_exited(self) -> bool:
        assert self.process is not None
        return self.process.poll() is not None or self.answers()

    def client(self) -> redis.Redis:
        """A direct client of this node (no Sentinel)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)

    def answers(self) -> bool:
        """Whether this node's own process answers on its port (not some other server)."""
        if self.process is None:
            return False
        try:
            with self.client() as client:
                return int(client.info("server")["process_id"]) == self.process.pid
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop it if it still runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class SentinelTopology:
    """A master, one replica and three sentinels monitoring the master as `MASTER_NAME`."""

    def __init__(self, workdir: Path) -> None:
        self.master = RedisNode(workdir, "master")
        self.replica = RedisNode(workdir, "replica")
        self.sentinels = [RedisNode(workdir, f"sentinel-{i}") for i in range(3)]

    @property
    def sentinel_addresses(self) -> str:
        """`DASHBOARD_REDIS_SENTINELS`: every sentinel's host:port."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self) -> None:
        """Start every node and wait until the sentinels see the replica and each other."""
        data = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.master.start(*data)
        self.replica.start(
            *data,
            "--replicaof",
            "127.0.0.1",
            str(self.master.port),
        )
        wait_until(self._replica_in_sync, timeout=20, what="the replica's first sync")
        for sentinel in self.sentinels:
            conf = sentinel.workdir / "sentinel.conf"  # a sentinel rewrites its own config
            conf.write_text(
                "bind 127.0.0.1\n"
                f"dir {sentinel.workdir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} {QUORUM}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n",
                encoding="utf-8",
            )
            sentinel.start(str(conf), binary="redis-sentinel")
        try:
            wait_until(self._sentinels_ready, timeout=30, what="the sentinels to find each other")
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}\n{self._report()}") from None

    def stop(self) -> None:
        """Stop every node still running."""
        for node in [*self.sentinels, self.replica, self.master]:
            node.stop()

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers names it."""
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    reply = client.execute_command(
                        "SENTINEL", "get-master-addr-by-name", MASTER_NAME
                    )
                    return int(reply[1])
            except redis.RedisError:
                continue
        return None

    def _replica_in_sync(self) -> bool:
        try:
            with self.master.client() as client:
                slave = client.info("replication").get("slave0")
        except redis.RedisError:
            return False
        return isinstance(slave, dict) and slave.get("state") == "online"

    def _report(self) -> str:
        """What each sentinel sees of the master, and the tail of every node's log."""
        parts = []
        for node in [self.master, self.replica, *self.sentinels]:
            view = ""
            if node in self.sentinels:
                try:
                    with node.client() as client:
                        state = client.sentinel_master(MASTER_NAME)
                    view = f" sees {state['num-slaves']} replica(s), "
                    view += f"{state['num-other-sentinels']} other sentinel(s)"
                except redis.RedisError as error:
                    view = f" does not answer: {error}"
            parts.append(f"--- {node.name} on port {node.port}{view}\n{node.log_tail()}")
        return "\n".join(parts)

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            try:
                with sentinel.client() as client:
                    state = client.sentinel_master(MASTER_NAME)
            except redis.RedisError:
                return False
            if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                return False
        return True


def watch_failover(topology: SentinelTopology, *, since: float, timeout: float) -> float:
    """Seconds from `since` (a monotonic time) until the sentinels name the replica as master."""
    wait_until(
        lambda: topology.master_port() == topology.replica.port,
        timeout=timeout,
        what="the sentinels to promote the replica",
    )
    return time.monotonic() - since
