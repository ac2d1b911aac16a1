"""The REST API fuzzed by schemathesis against the live `/api/schema` of a real web process.

Every operation, positive and negative data, a bounded number of examples each: no 5xx, and no
status, header, content type or body that the schema does not declare. A staff token, so that
every operation is reachable; requests without or with a wrong token come from schemathesis'
own auth checks.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAX_EXAMPLES = 50  # per operation and phase


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    """A worker and a web process, and a staff token (auth failures do not lock it out)."""
    from django.conf import settings

    stack = Stack(redis_url=str(settings.CONFIG.redis_url), log_dir=tmp_path_factory.mktemp("fz"))
    try:
        stack.start_worker()
        # schemathesis sends wrong tokens on purpose; the per-address lockout has its own tests.
        stack.start_web(DASHBOARD_AUTH_FAILURES_PER_IP="1000000")
        yield stack, stack.issue_token("fuzz", "--staff")
    finally:
        stack.stop()


def test_schemathesis_finds_nothing(fuzzed: tuple[Stack, str], tmp_path: Path) -> None:
    stack, token = fuzzed
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"http://127.0.0.1:{stack.web_ports[0]}/api/schema",
            "--header",
            f"Authorization: Bearer {token}",
            "--mode",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "1",  # the same cases every run: a failure here is reproducible, never a flake
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    (tmp_path / "schemathesis.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-3000:]
    assert "Operations:       8 selected / 8 total" in done.stdout, done.stdout[-3000:]
    # The closing line: "No issues found", or only warnings (the kicks by token and by user
    # answer 404 for every generated name: no client is connected while fuzzing).
    closing = done.stdout.strip().splitlines()[-1]
    assert re.search(r" (No issues found|\d+ warnings?) in ", closing), done.stdout[-3000:]
    assert not re.search(r"failure|error", closing), done.stdout[-3000:]
