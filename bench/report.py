"""`azpytest report` against its floor: a bare `iterparse` loop over the same JUnit file.

For each size (default 100 000 and 1 000 000 test cases) and each shape (every test passed;
every test failed, each with a short pytest traceback), the floor and the report run one after
the other as fresh processes, `--repeat` times, interleaved; the figures are the medians of
wall time and of peak RSS, printed beside the floor's with their ratios. The targets (issue
17): time within 1.3x the floor; the all-failing report's memory within 2x the all-passing
one's.

    .venv/bin/python bench/report.py [CASES ...] [--repeat N] [--merge]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = (100_000, 1_000_000)
MODULES = 400

# What the floor does: read every element, drop each test case once read. The least any
# streaming reader of the file can do.
FLOOR = """
import sys
import xml.etree.ElementTree as ET

stack, cases = [], 0
for event, element in ET.iterparse(sys.argv[1], events=("start", "end")):
    if event == "start":
        stack.append(element)
        continue
    stack.pop()
    if element.tag == "testcase":
        cases += 1
        stack[-1].remove(element)
print(cases)
"""

TRACEBACK = """\
    def test_case_{n}(connection):
        rows = fetch_orders(connection, customer_id={n})
&gt;       assert len(rows) == {n}
E       assert 0 == {n}
E        +  where 0 = len([])

tests/{module}.py:{line}: AssertionError"""


def write_junit(path: Path, root: Path, cases: int, failing: bool) -> None:
    """A pytest-shaped JUnit file of `cases` tests spread over MODULES test files, every one
    passed or every one failed."""
    modules = [f"test_area{m:03d}" for m in range(MODULES)]
    (root / "tests").mkdir(parents=True, exist_ok=True)
    for module in modules:
        (root / "tests" / f"{module}.py").write_text("# generated\n")
    with path.open("w", encoding="utf-8") as out:
        write = out.write
        write('<?xml version="1.0" encoding="utf-8"?>\n<testsuites name="pytest tests">\n')
        write(
            f'<testsuite name="pytest" errors="0" failures="{cases if failing else 0}" '
            f'skipped="0" tests="{cases}" time="{cases * 0.02:.3f}" hostname="runner">\n'
        )
        for n in range(cases):
            module = modules[n * MODULES // cases]
            klass = f".TestOrders{n % 7}" if n % 3 == 0 else ""
            name = f"test_case_{n}" + (f"[customer-{n % 13}]" if n % 5 == 0 else "")
            head = (
                f'<testcase classname="tests.{module}{klass}" name="{name}" '
                f'time="{(n * 7919 % 1000) / 10000:.3f}"'
            )
            if failing:
                line = 10 + n % 90
                write(
                    f'{head}><failure message="assert 0 == {n}">'
                    f"{TRACEBACK.format(n=n, module=module, line=line)}</failure></testcase>\n"
                )
            else:
                write(f"{head} />\n")
        write("</testsuite>\n</testsuites>\n")


def measure(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB and exit code of a fresh process."""
    began = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
    wall = time.perf_counter() - began
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)  # KiB on Linux


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=list(SIZES), metavar="CASES")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs of each arm")
    parser.add_argument("--merge", action="store_true", help="time report --merge as well")
    args = parser.parse_args(argv)
    print(f"report vs a bare iterparse loop; medians of {args.repeat} interleaved run(s)")
    for cases in args.sizes:
        peaks: dict[str, float] = {}
        for shape in ("passing", "failing"):
            with tempfile.TemporaryDirectory() as folder:
                root = Path(folder)
                junit = root / "junit.xml"
                write_junit(junit, root, cases, failing=shape == "failing")
                megabytes = junit.stat().st_size / 1e6
                summary, output = root / "summary.md", root / "output"
                env = {
                    **{
                        k: v
                        for k, v in os.environ.items()
                        if not k.startswith(("GITHUB_", "AZPYTEST_"))
                    },
                    "GITHUB_ACTIONS": "true",
                    "GITHUB_STEP_SUMMARY": str(summary),
                    "GITHUB_OUTPUT": str(output),
                    "GITHUB_WORKSPACE": str(root),
                }
                arms = {
                    "floor": [sys.executable, "-c", FLOOR, str(junit)],
                    "report": [sys.executable, "-m", "azpytest", "report", str(junit)],
                }
                if args.merge:
                    merged = str(root / "merged.xml")
                    arms["report --merge"] = [*arms["report"], "--merge", merged]
                walls: dict[str, list[float]] = {arm: [] for arm in arms}
                rss: dict[str, list[float]] = {arm: [] for arm in arms}
                for _ in range(args.repeat):
                    for arm, command in arms.items():
                        summary.write_text("")
                        output.write_text("")
                        wall, peak, code = measure(command, env, root)
                        assert code == 0, f"{arm} exited {code}"
                        walls[arm].append(wall)
                        rss[arm].append(peak)
            floor_wall = statistics.median(walls["floor"])
            floor_rss = statistics.median(rss["floor"])
            print(f"{cases:>9,} cases, all {shape} ({megabytes:.0f} MB of JUnit):")
            print(f"    {'floor':<15} {floor_wall:7.2f} s  {floor_rss:6.0f} MB")
            for arm in arms:
                if arm == "floor":
                    continue
                wall, peak = statistics.median(walls[arm]), statistics.median(rss[arm])
                print(
                    f"    {arm:<15} {wall:7.2f} s  {peak:6.0f} MB   "
                    f"time {wall / floor_wall:.2f}x the floor (target <= 1.3x), "
                    f"memory {peak / floor_rss:.2f}x the floor's"
                )
            peaks[shape] = statistics.median(rss["report"])
        print(
            f"    all failing vs all passing: {peaks['failing'] / peaks['passing']:.2f}x the "
            "peak memory (target <= 2x)"
        )


if __name__ == "__main__":
    main()
