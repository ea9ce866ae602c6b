"""`azpytest report` on a 100 000-test JUnit file: wall time and peak memory of the step.

Targets: under 3 s and under 200 MB peak RSS, with and without --merge.
    .venv/bin/python bench/report.py [CASES]
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import XMLGenerator
from xml.sax.xmlreader import AttributesImpl

CASES = 100_000
MODULES = 400
SEED = 4

LONGREPR = """\
connection = <psycopg.Connection [IDLE] (host=db.example.internal database=orders) at 0x7f>

    def test_{name}(connection):
        rows = fetch_orders(connection, customer_id={n})
>       assert_totals(rows, expected=Decimal("{n}.00"))

tests/{module}.py:{call}: 
_ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ 

rows = [{rows}]
expected = Decimal('{n}.00')

    def assert_totals(rows, expected):
        total = sum(row["amount"] for row in rows)
>       assert total == expected, f"total {{total}} != {{expected}}"
E       AssertionError: total {n}.01 != {n}.00
E       assert Decimal('{n}.01') == Decimal('{n}.00')

tests/helpers/money.py:27: AssertionError
"""


def write_junit(path: Path, root: Path, cases: int) -> dict[str, int]:
    """A pytest-shaped JUnit file: mostly passes, 1 % failures with long tracebacks, fixture
    errors, skips, xfails and captured output."""
    rng = random.Random(SEED)
    modules = [f"test_area{m:03d}" for m in range(MODULES)]
    (root / "tests" / "helpers").mkdir(parents=True, exist_ok=True)
    for module in modules:
        (root / "tests" / f"{module}.py").write_text("# generated\n")
    counts = {"failed": 0, "error": 0, "skipped": 0, "xfailed": 0, "passed": 0}
    with path.open("wb") as handle:
        xml = XMLGenerator(handle, encoding="utf-8", short_empty_elements=True)
        xml.startDocument()
        xml.startElement("testsuites", AttributesImpl({"name": "pytest tests"}))
        xml.startElement(
            "testsuite",
            AttributesImpl(
                {
                    "name": "pytest",
                    "errors": "0",
                    "failures": "0",
                    "skipped": "0",
                    "tests": str(cases),
                    "time": "1834.512",
                    "timestamp": "2025-01-01T00:00:00+00:00",
                    "hostname": "runner",
                }
            ),
        )
        for n in range(cases):
            module = modules[n * MODULES // cases]
            klass = f".TestOrders{n % 7}" if n % 3 == 0 else ""
            name = f"test_case_{n}" + (f"[customer-{n % 13}/eu::west]" if n % 5 == 0 else "")
            attrs = {
                "classname": f"tests.{module}{klass}",
                "name": name,
                "time": f"{rng.expovariate(50):.3f}",
            }
            xml.startElement("testcase", AttributesImpl(attrs))
            roll = rng.random()
            if roll < 0.01:
                counts["failed"] += 1
                text = LONGREPR.format(
                    name=name, n=n, module=module, call=10 + n % 90, rows=", ".join(["{...}"] * 40)
                )
                message = f"AssertionError: total {n}.01 != {n}.00\nassert Decimal('{n}.01')"
                xml.startElement("failure", AttributesImpl({"message": message}))
                xml.characters(text)
                xml.endElement("failure")
                xml.startElement("system-out", AttributesImpl({}))
                xml.characters("query log line\n" * 50)
                xml.endElement("system-out")
            elif roll < 0.012:
                counts["error"] += 1
                xml.startElement(
                    "error",
                    AttributesImpl({"message": 'failed on setup with "OperationalError: timeout"'}),
                )
                xml.characters("conftest.py:40: in connection\n    raise\nE   OperationalError\n")
                xml.endElement("error")
            elif roll < 0.03:
                counts["skipped"] += 1
                xml.startElement(
                    "skipped", AttributesImpl({"type": "pytest.skip", "message": "needs AKS"})
                )
                xml.characters(f"tests/{module}.py:3: needs AKS")
                xml.endElement("skipped")
            elif roll < 0.033:
                counts["xfailed"] += 1
                xml.startElement(
                    "skipped", AttributesImpl({"type": "pytest.xfail", "message": "bug 12"})
                )
                xml.endElement("skipped")
            else:
                counts["passed"] += 1
            xml.endElement("testcase")
            xml.ignorableWhitespace("\n")
        xml.endElement("testsuite")
        xml.endElement("testsuites")
        xml.endDocument()
    return counts


def measure(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds, peak RSS in MB and exit code of `python -m azpytest ARGS`."""
    began = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "azpytest", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
    )
    _pid, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - began
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, child.returncode  # ru_maxrss is in KiB on Linux


def main() -> None:
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else CASES
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        junit = root / "junit.xml"
        began = time.perf_counter()
        counts = write_junit(junit, root, cases)
        print(
            f"generated {cases} test cases ({junit.stat().st_size / 1e6:.1f} MB of JUnit, "
            f"{counts}) in {time.perf_counter() - began:.1f} s"
        )
        summary, output = root / "summary.md", root / "output"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "AZPYTEST_"))},
            "GITHUB_ACTIONS": "true",
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_OUTPUT": str(output),
            "GITHUB_WORKSPACE": str(root),
        }
        for label, args in (
            ("report", ["report", str(junit)]),
            ("report --merge", ["report", str(junit), "--merge", str(root / "merged.xml")]),
        ):
            summary.write_text("")
            output.write_text("")
            wall, cpu, rss, code = measure(args, env, root)
            print(
                f"azpytest {label}: {wall:.2f} s wall ({cpu:.2f} s CPU), {rss:.0f} MB peak RSS, "
                f"exit {code}, "
                f"summary {summary.stat().st_size / 1024:.0f} KiB "
                "(targets: < 3 s, < 200 MB)"
            )


if __name__ == "__main__":
    main()
