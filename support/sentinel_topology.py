"""A Redis master, a replica and three sentinels on loopback free ports, for failover tests."""

from __future__ import annotations

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


class RedisNode:
    """One redis-server (data node or sentinel) on a free loopback port, its log in `workdir`."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.port = free_port()
        self.name = name
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str, binary: str = "redis-server") -> None:
        """Start `binary` with `args`; wait until it answers PING."""
        server = shutil.which(binary)
        assert server, f"{binary} must be installed (.ci/run installs it)"
        self.process = subprocess.Popen(
            [server, *args, "--logfile", str(self.workdir / "redis.log")],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.answers, timeout=20, what=f"redis {self.name}")

    def client(self) -> redis.Redis:
        """A direct client of this node (no Sentinel)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)

    def answers(self) -> bool:
        """Whether it answers PING."""
        try:
            with self.client() as client:
                return bool(client.ping())
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
        self.master.start("--port", str(self.master.port), *data)
        self.replica.start(
            "--port",
            str(self.replica.port),
            *data,
            "--replicaof",
            "127.0.0.1",
            str(self.master.port),
        )
        wait_until(self._replica_in_sync, timeout=20, what="the replica's first sync")
        for sentinel in self.sentinels:
            conf = sentinel.workdir / "sentinel.conf"  # a sentinel rewrites its own config
            conf.write_text(
                f"port {sentinel.port}\n"
                "bind 127.0.0.1\n"
                f"dir {sentinel.workdir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} {QUORUM}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n",
                encoding="utf-8",
            )
            sentinel.start(str(conf), binary="redis-sentinel")
        wait_until(self._sentinels_ready, timeout=30, what="the sentinels to find each other")

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
