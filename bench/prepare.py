"""`azpytest prepare`'s sequential round trips: 20 and 100 secrets read by a `*` glob, with
and without the AKS cluster's kubeconfig, against the sandbox adding 30 ms and then 90 ms to
every request. The round trips are the slope between the two latencies (wall time grows by
one added latency per sequential round trip), so prepare's own CPU and Python's start-up do
not count as round trips. Runs at the two latencies are interleaved (the machine is shared).
Targets (issue 17): 20 secrets + the cluster in at most 4 round trips beyond start-up, and
100 secrets no more than 1.3x the time of 20.

    .venv/bin/python bench/prepare.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from azpytest_sandbox import Sandbox, build_scenario

LATENCIES_MS = (30, 90)
RUNS = 5
SUBSCRIPTION = "11111111-2222-4333-8444-555555555555"


def scenario(count: int) -> dict[str, Any]:
    return {
        "vaults": [
            {
                "name": "kv-bench",
                "grants": [{"principal": "azpytest-ci"}],
                "secrets": {f"s-{i:03d}": f"value-{i:03d}" for i in range(count)},
            }
        ],
        "subscriptions": [
            {
                "id": SUBSCRIPTION,
                "name": "bench",
                "resource_groups": [{"name": "rg-bench", "clusters": [{"name": "aks-bench"}]}],
                "grants": [
                    {
                        "principal": "azpytest-ci",
                        "role": "Azure Kubernetes Service Cluster User Role",
                    }
                ],
            }
        ],
    }


def run_prepare(sandbox: Sandbox, folder: Path, cluster: bool) -> float:
    env = {
        **os.environ,
        **sandbox.env,
        "GITHUB_ACTIONS": "true",
        "RUNNER_TEMP": str(folder),
        "GITHUB_ENV": str(folder / "env"),
        "AZPYTEST_KEY_VAULT": "kv-bench",
        "AZPYTEST_SECRETS": "- '*'",
    }
    if cluster:
        env.update(
            {
                "AZPYTEST_SUBSCRIPTION_ID": SUBSCRIPTION,
                "AZPYTEST_AKS_RESOURCE_GROUP": "rg-bench",
                "AZPYTEST_AKS_CLUSTER": "aks-bench",
            }
        )
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "azpytest", "prepare"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


def measure(count: int, cluster: bool) -> tuple[dict[int, float], float]:
    """Median wall time at each latency, and the sequential round trips (the slope)."""
    times: dict[int, list[float]] = {latency: [] for latency in LATENCIES_MS}
    with ExitStack() as stack:
        sandboxes = {
            latency: stack.enter_context(
                Sandbox(build_scenario(scenario(count)), latency_ms=latency)
            )
            for latency in LATENCIES_MS
        }
        for _ in range(RUNS):
            for latency, sandbox in sandboxes.items():
                with tempfile.TemporaryDirectory() as folder:
                    times[latency].append(run_prepare(sandbox, Path(folder), cluster))
                sandbox.log.clear()
    medians = {latency: statistics.median(ts) for latency, ts in times.items()}
    low, high = LATENCIES_MS
    trips = (medians[high] - medians[low]) / ((high - low) / 1000)
    return medians, trips


def main() -> None:
    results: dict[tuple[int, bool], dict[int, float]] = {}
    for cluster in (False, True):
        for count in (20, 100):
            medians, trips = measure(count, cluster)
            results[count, cluster] = medians
            what = f"{count:3d} secrets{' + AKS cluster' if cluster else ''}"
            walls = ", ".join(f"{medians[ms]:.3f} s at {ms} ms" for ms in LATENCIES_MS)
            print(f"{what:<28} {walls} (medians of {RUNS}); {trips:.1f} sequential round trips")
    low = LATENCIES_MS[0]
    for cluster in (False, True):
        ratio = results[100, cluster][low] / results[20, cluster][low]
        label = " + AKS cluster" if cluster else ""
        print(f"100 vs 20 secrets{label} at {low} ms: {ratio:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
