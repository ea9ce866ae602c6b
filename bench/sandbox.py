"""How long the sandbox takes to start and stop, and a token round trip through the proxy.

Prints figures; the target (issue 2) is a start in under 1 s.
    .venv/bin/python bench/sandbox.py
"""

from __future__ import annotations

import os
import statistics
import time

from azure.identity import ClientAssertionCredential

from azpytest_sandbox import Sandbox


def main() -> None:
    starts, stops = [], []
    for _ in range(5):
        began = time.perf_counter()
        sandbox = Sandbox().start()
        starts.append(time.perf_counter() - began)
        began = time.perf_counter()
        sandbox.stop()
        stops.append(time.perf_counter() - began)
    median, worst = statistics.median(starts) * 1000, max(starts) * 1000
    print(f"start: median {median:.0f} ms, max {worst:.0f} ms (5 runs)")
    print(f"stop:  median {statistics.median(stops) * 1000:.0f} ms, max {max(stops) * 1000:.0f} ms")

    with Sandbox() as sandbox:
        os.environ.update(sandbox.env)
        app = sandbox.scenario.default_app
        assert app is not None
        times = []
        for _ in range(20):
            credential = ClientAssertionCredential(
                app.tenant_id, app.client_id, lambda: sandbox.github.issue()
            )
            began = time.perf_counter()
            credential.get_token("https://vault.azure.net/.default")
            times.append(time.perf_counter() - began)
        median = statistics.median(times) * 1000
        print(f"token through the proxy: median {median:.1f} ms (20 fresh credentials)")


if __name__ == "__main__":
    main()
