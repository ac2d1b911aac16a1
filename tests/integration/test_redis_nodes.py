"""The suite's Redis nodes (support/sentinel_topology.py) start as themselves or say why not.

A port `free_port` chose can be taken before the server binds it. A node that then believed
whichever server answered on that port was its own made a sentinel topology wait 30 s for
sentinels that were never there (seen once in CI); these tests take the port on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.sentinel_topology import RedisNode

pytestmark = [pytest.mark.integration]


def test_a_node_whose_port_was_taken_starts_on_another_and_answers_as_itself(
    tmp_path: Path,
) -> None:
    # given a Redis server already on the port the second node chose
    first = RedisNode(tmp_path, "first")
    second = RedisNode(tmp_path, "second")
    try:
        first.start("--bind", "127.0.0.1", "--save", "")
        second.port = first.port  # after the start: the port `first` ended up on
        # when the second node starts
        second.start("--bind", "127.0.0.1", "--save", "")
        # then it runs on a port of its own, and its port answers with its own process
        assert second.port != first.port
        with second.client() as client:
            assert second.process is not None
            assert int(client.info("server")["process_id"]) == second.process.pid
    finally:
        second.stop()
        first.stop()


def test_a_node_that_exits_for_another_reason_fails_at_once_with_its_log(tmp_path: Path) -> None:
    node = RedisNode(tmp_path, "broken")
    with pytest.raises(AssertionError, match="exited") as failure:
        node.start("--no-such-option", "1")
    assert "no-such-option" in str(failure.value)
