"""What the plugin adds to every pytest start: `pytest --version` with and without it.

Target (DESIGN.md): under 50 ms.
    .venv/bin/python bench/plugin.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 15


def median_seconds(*args: str) -> float:
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", *args], check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def import_cost() -> float:
    """The plugin module's own import, pytest already loaded (less noisy than whole runs)."""
    code = (
        "import time, pytest; t = time.perf_counter(); import azpytest.plugin; "
        "print(time.perf_counter() - t)"
    )
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(RUNS)
    ]
    return statistics.median(runs)


def main() -> None:
    print(f"import azpytest.plugin after pytest: {import_cost() * 1000:.1f} ms (median of {RUNS})")
    without = median_seconds("--version", "-p", "no:azpytest")
    with_plugin = median_seconds("--version")
    print(f"pytest --version without the plugin: {without * 1000:.0f} ms (median of {RUNS})")
    print(f"pytest --version with the plugin:    {with_plugin * 1000:.0f} ms")
    print(f"the plugin adds {(with_plugin - without) * 1000:.0f} ms (target < 50 ms)")


if __name__ == "__main__":
    main()
