"""Wall time of `azpytest prepare` for 1, 20 and 100 secrets, the sandbox adding 30 ms to
every request. Prints figures; the targets (issue 3): 20 secrets in under 4 round trips plus
0.6 s of Python start-up, and 100 secrets in no more than 1.5x the time of 20.

    .venv/bin/python bench/prepare.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from azpytest_sandbox import Sandbox, build_scenario

LATENCY_MS = 30
RUNS = 5


def scenario(count: int) -> dict[str, object]:
    return {
        "vaults": [
            {
                "name": "kv-bench",
                "grants": [{"principal": "azpytest-ci"}],
                "secrets": {f"s-{i:03d}": f"value-{i:03d}" for i in range(count)},
            }
        ]
    }


def run_prepare(sandbox: Sandbox, folder: Path) -> float:
    env = {
        **os.environ,
        **sandbox.env,
        "GITHUB_ACTIONS": "true",
        "RUNNER_TEMP": str(folder),
        "GITHUB_ENV": str(folder / "env"),
        "AZPYTEST_KEY_VAULT": "kv-bench",
        "AZPYTEST_SECRETS": "- '*'",
    }
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "azpytest", "prepare"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


def startup() -> float:
    """What Python needs before the first request: interpreter and imports."""
    code = "import azpytest.cli, azpytest.steps.prepare, azure.identity, azure.keyvault.secrets"
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    base = startup()
    print(f"python start-up with imports: {base:.3f} s (median of {RUNS})")
    results = {}
    for count in (1, 20, 100):
        with Sandbox(build_scenario(scenario(count)), latency_ms=LATENCY_MS) as sandbox:
            times = []
            for _ in range(RUNS):
                with tempfile.TemporaryDirectory() as folder:
                    times.append(run_prepare(sandbox, Path(folder)))
                    sandbox.log.clear()
            wall = statistics.median(times)
            results[count] = wall
            trips = (wall - base) / (LATENCY_MS / 1000)
            print(
                f"{count:4d} secrets: {wall:.3f} s wall (median of {RUNS}); beyond start-up "
                f"{wall - base:.3f} s = {trips:.1f} x {LATENCY_MS} ms round trips"
            )
    print(f"100 vs 20 secrets: {results[100] / results[20]:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
