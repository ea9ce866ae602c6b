"""What the plugin adds to every pytest start: `pytest --version` with and without it, paired.

Each pair runs the two arms back to back, in alternating order (so neither always runs on a
warmer or a busier machine), and the overhead is the median of the pairs' differences, with
the quartiles of those differences beside it: an overhead the noise can hide shows as a
spread around zero, never as a negative figure from two medians taken apart.
Target (DESIGN.md): under 50 ms.

    .venv/bin/python bench/plugin.py [--pairs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

PAIRS = 21

WITHOUT = ("--version", "-p", "no:azpytest")
WITH = ("--version",)


def seconds(*args: str) -> tuple[float, float]:
    """Wall and CPU seconds of `pytest ARGS` in a fresh process."""
    began = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _pid, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, args
    return time.perf_counter() - began, usage.ru_utime + usage.ru_stime


def import_cost(runs: int) -> float:
    """The plugin module's own import, pytest already loaded (less noisy than whole runs)."""
    code = (
        "import time, pytest; t = time.perf_counter(); import azpytest.plugin; "
        "print(time.perf_counter() - t)"
    )
    return statistics.median(
        float(
            subprocess.run(
                [sys.executable, "-c", code], check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(runs)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=PAIRS)
    args = parser.parse_args(argv)
    seconds(*WITH)  # the first start fills the page cache and writes .pyc files
    seconds(*WITHOUT)
    on: list[tuple[float, float]] = []
    off: list[tuple[float, float]] = []
    for pair in range(args.pairs):
        if pair % 2:
            off.append(seconds(*WITHOUT))
            on.append(seconds(*WITH))
        else:
            on.append(seconds(*WITH))
            off.append(seconds(*WITHOUT))
    print(f"import azpytest.plugin after pytest: {import_cost(args.pairs) * 1000:.1f} ms (median)")
    for index, what in ((0, "wall"), (1, "CPU")):
        with_ms = [run[index] * 1000 for run in on]
        without_ms = [run[index] * 1000 for run in off]
        differences = [a - b for a, b in zip(with_ms, without_ms, strict=True)]
        low, _, high = statistics.quantiles(differences, n=4)
        print(
            f"pytest --version, {what} time: {statistics.median(without_ms):.0f} ms without the "
            f"plugin, {statistics.median(with_ms):.0f} ms with it; the plugin adds "
            f"{statistics.median(differences):.0f} ms, the median of {args.pairs} paired "
            f"differences (quartiles {low:.0f} to {high:.0f} ms; target < 50 ms)"
        )


if __name__ == "__main__":
    main()
