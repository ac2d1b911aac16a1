"""A storm of handshakes with one credential the process has not cached: what its lookup costs.

The clients of a stopped web process reconnect to another one together, mostly with a few
shared tokens. Here `--handshakes` concurrent token lookups on a cold cache, in a uvloop loop,
two ways, alternated over `--rounds` (the cache cleared before each):

- `shared`: `access.credentials.atoken_credential`, which looks a miss up once for every caller
  asking while it runs;
- `each`: one `database_sync_to_async(token_credential)` per caller (the path before it), every
  one a hop through channels' single database thread.

Prints the wall time until every lookup is answered and the process CPU, median of the rounds.
Run: `.venv/bin/python bench/credential_storm.py [--handshakes 2000] [--rounds 5]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fanout import database_env  # noqa: E402
from support.processes import issue_token, run_command  # noqa: E402


async def measure(args: argparse.Namespace, key: str) -> None:
    """Alternate the two ways, round by round."""
    from channels.db import database_sync_to_async

    from access.credentials import CACHE, atoken_credential, token_credential

    async def shared() -> list[Any]:
        return await asyncio.gather(*(atoken_credential(key) for _ in range(args.handshakes)))

    async def each() -> list[Any]:
        lookup = database_sync_to_async(token_credential)
        return await asyncio.gather(*(lookup(key) for _ in range(args.handshakes)))

    times: dict[str, list[tuple[float, float]]] = {"shared": [], "each": []}
    for round_ in range(args.rounds):
        for name, way in (("shared", shared), ("each", each))[:: 1 if round_ % 2 else -1]:
            CACHE.clear()
            wall, cpu = time.perf_counter(), time.process_time()
            answers = await way()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
            assert all(a is not None for a in answers)
    load = os.getloadavg()
    print(f"handshakes={args.handshakes} rounds={args.rounds} load average {load[0]:.2f}")
    for name, pairs in times.items():
        wall = statistics.median(p[0] for p in pairs)
        cpu = statistics.median(p[1] for p in pairs)
        print(
            f"{name:>7}: every lookup answered after {wall * 1000:.0f} ms, CPU {cpu * 1000:.0f} ms"
        )


def main() -> None:
    """Issue a token, set the process up as a web process, measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    setup = {"DASHBOARD_SECRET_KEY": "bench", **database_env()}
    run_command(["migrate", "--no-input"], env=setup, timeout=300)
    key = issue_token(f"credential-storm-{uuid.uuid4().hex[:8]}", env=setup)
    os.environ.update(setup)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard_project.settings")
    import django

    django.setup()
    import uvloop

    uvloop.run(measure(args, key))


if __name__ == "__main__":
    main()
