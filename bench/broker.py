"""The token broker's cost per request, against the sandbox (the stand-ins add LATENCY_MS to
every answer, as a network would). Prints figures; the targets (issue 8): a cached token in
under 2 ms (median of 1,000 requests), a fresh one in one Entra round trip plus under 20 ms.

A "round trip" is what the job's credential itself needs for a new token: a GitHub assertion
and the Entra token request, each on a new connection (the broker builds a new credential for
every fetch). It is measured the same way without the broker, and the difference is the
broker's own cost.

    .venv/bin/python bench/broker.py
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import requests

from azpytest import broker, identity, settings
from azpytest.github import Workflow
from azpytest_sandbox import Sandbox

LATENCY_MS = 20
CACHED = 1000
FRESH = 40


def timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return (time.perf_counter() - began) * 1000


def main() -> None:
    with Sandbox(latency_ms=LATENCY_MS) as sandbox, tempfile.TemporaryDirectory() as run_dir:
        sandbox.apply(os.environ)  # the proxy and CA bundle, as a workflow step has them
        environ = {**sandbox.env, "GITHUB_ACTIONS": "true", "AZPYTEST_RUN_DIR": run_dir}
        loaded = settings.load({}, environ)
        workflow = Workflow(environ, out=io.StringIO())
        with broker.for_settings(loaded, workflow) as served:
            session = requests.Session()
            headers = {"X-IDENTITY-HEADER": served.header}

            def ask(resource: str) -> None:
                params = {"api-version": broker.API_VERSION, "resource": resource}
                answer = session.get(served.endpoint, params=params, headers=headers, timeout=30)
                assert answer.status_code == 200, answer.text

            def direct(resource: str) -> None:
                who = identity.build(loaded, workflow)
                try:
                    who.get_token_info(f"{resource}/.default")
                finally:
                    who.close()

            for i in range(3):  # imports, first connections
                ask(f"api://azpytest-bench-warm-{i}")
                direct(f"api://azpytest-bench-warm-direct-{i}")
            ask("https://vault.azure.net")
            cached = [timed(lambda: ask("https://vault.azure.net")) for _ in range(CACHED)]
            fresh, round_trip = [], []
            for i in range(FRESH):  # interleaved, so both see the same machine
                fresh.append(timed(lambda i=i: ask(f"api://azpytest-bench-{i}")))
                round_trip.append(timed(lambda i=i: direct(f"api://azpytest-bench-direct-{i}")))

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20)[-1]

    overhead = statistics.median(fresh) - statistics.median(round_trip)
    print(f"sandbox latency per answer: {LATENCY_MS} ms")
    print(
        f"cached token: median {statistics.median(cached):.2f} ms, p95 {p95(cached):.2f} ms "
        f"over {CACHED} requests (target: median < 2 ms)"
    )
    print(
        f"fresh token:  median {statistics.median(fresh):.1f} ms, p95 {p95(fresh):.1f} ms "
        f"over {FRESH} resources"
    )
    print(
        f"the credential alone (GitHub assertion + Entra token): median "
        f"{statistics.median(round_trip):.1f} ms"
    )
    print(f"broker's own cost on a fresh token: {overhead:+.1f} ms (target: < 20 ms)")


if __name__ == "__main__":
    main()
