"""docker-compose.yml's optional `sentinel` profile: its shape, and its sentinel configuration
run by a real redis-sentinel (no Docker engine runs here)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import redis

from support.processes import wait_until
from support.sentinel_topology import RedisNode
from tests.deploy.test_deploy_files import compose


def sentinel_services(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if name.startswith("sentinel")}


def config_lines(service: dict[str, Any]) -> list[str]:
    """The lines the service's command writes to its sentinel.conf (printf's arguments)."""
    script = service["command"][2]
    words = shlex.split(script.split(">", 1)[0])
    assert words[:2] == ["printf", "%s\\n"], words
    return words[2:]


def test_the_profile_adds_a_replica_and_three_sentinels_with_a_quorum_of_two() -> None:
    services = compose()["services"]
    sentinels = sentinel_services(services)
    assert len(sentinels) == 3
    assert services["redis-replica"]["profiles"] == ["sentinel"]
    assert "--replicaof" in services["redis-replica"]["command"]
    for service in sentinels.values():
        assert service["profiles"] == ["sentinel"]
        assert "sentinel monitor desk redis 6379 2" in config_lines(service)
    # the default topology is unchanged: the profile's services start only when asked for
    assert "profiles" not in services["redis"]


def test_product_services_take_the_sentinels_from_the_environment() -> None:
    for name, service in compose()["services"].items():
        if service.get("image", "").startswith("dashboard"):
            env = service["environment"]
            assert env["DASHBOARD_REDIS_SENTINELS"] == "${DASHBOARD_REDIS_SENTINELS:-}", name
            assert env["DASHBOARD_REDIS_MASTER_NAME"] == "${DASHBOARD_REDIS_MASTER_NAME:-}", name


def test_the_sentinel_configuration_is_accepted_by_redis_sentinel(tmp_path: Path) -> None:
    # given the profile's sentinel.conf, pointed at a master on loopback instead of `redis`
    master = RedisNode(tmp_path, "master")
    sentinel = RedisNode(tmp_path, "sentinel")
    lines = config_lines(sentinel_services(compose()["services"])["sentinel1"])
    try:
        master.start("--bind", "127.0.0.1", "--save", "")  # its port is final once it runs
        # the sentinel's port is the one `start` passes on its command line
        text = "\n".join(lines).replace("port 26379", "bind 127.0.0.1")
        text = text.replace("monitor desk redis 6379", f"monitor desk 127.0.0.1 {master.port}")
        conf = sentinel.workdir / "sentinel.conf"
        conf.write_text(text + "\n", encoding="utf-8")
        # when redis-sentinel runs it
        sentinel.start(str(conf), binary="redis-sentinel")
        # then it monitors the master with the profile's quorum and timings
        with sentinel.client() as client:
            wait_until(lambda: _master_state(client) is not None, timeout=10, what="the sentinel")
            state = _master_state(client)
        assert state is not None
        assert (int(state["quorum"]), int(state["down-after-milliseconds"])) == (2, 5000)
        assert int(state["failover-timeout"]) == 60000
    finally:
        sentinel.stop()
        master.stop()


def _master_state(client: redis.Redis) -> dict[str, Any] | None:
    try:
        return dict(client.sentinel_master("desk"))
    except redis.RedisError:
        return None
