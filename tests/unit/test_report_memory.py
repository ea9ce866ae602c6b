"""The report on JUnit files with very many failures: it keeps only what its outputs show
(the first failures and failed ids, the slowest tests, counts) and still says the right
totals; a rerun still gets every failed test from the JUnit file. Durations print hours."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from azpytest.report.junit import failed_node_ids
from azpytest.report.model import FAILED_TESTS_LIMIT, TEARDOWN_WINDOW, Reader
from azpytest.report.summary import duration

Step = Callable[..., Any]  # the actions_step fixture (tests/conftest.py)

FAILING = 100_000
PASSING = 5


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.5, "0.50 s"),
        (12.34, "12.3 s"),
        (59.4, "59.4 s"),
        (59.6, "1 min 0 s"),
        (75, "1 min 15 s"),
        (3599.4, "59 min 59 s"),
        (3599.6, "1 h 0 min 0 s"),
        (3600, "1 h 0 min 0 s"),
        (12_311, "3 h 25 min 11 s"),
        (738_709, "205 h 11 min 49 s"),  # printed "12311 min 49 s" before
    ],
)
def test_durations_over_an_hour_print_hours(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def _ids(root: Path) -> list[str]:
    (root / "tests").mkdir()
    (root / "tests" / "test_orders.py").write_text("")
    return [f"tests/test_orders.py::TestOrders::test_order_{n}[eu-west]" for n in range(FAILING)]


def _write(junit: Path, failing: int) -> None:
    with junit.open("w", encoding="utf-8") as out:
        out.write(f'<testsuites><testsuite name="pytest" tests="{failing + PASSING}" time="12311">')
        for n in range(PASSING):
            out.write(f'<testcase classname="tests.test_orders" name="test_ok_{n}" time="0.1"/>')
        for n in range(failing):
            out.write(
                f'<testcase classname="tests.test_orders.TestOrders" name="test_order_{n}[eu-west]"'
                f' time="0.01"><failure message="assert {n} == 0">tests/test_orders.py:{n}: '
                "AssertionError</failure></testcase>"
            )
        out.write("</testsuite></testsuites>")


def test_a_hundred_thousand_failures_report_their_counts_and_the_first_ids(
    tmp_path: Path, actions_step: Step
) -> None:
    ids = _ids(tmp_path)
    junit = tmp_path / "junit.xml"
    _write(junit, FAILING)
    result = actions_step(None, "report", str(junit), f"--root={tmp_path}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.outputs["total"], result.outputs["passed"], result.outputs["failed"]) == (
        str(FAILING + PASSING),
        str(PASSING),
        str(FAILING),
    )
    # The first ids in file order, as many as fit in the output's cap, and no more.
    first, size = [], 0
    for node_id in ids:
        size += len(node_id) + 1
        if size > FAILED_TESTS_LIMIT:
            break
        first.append(node_id)
    assert 1000 < len(first) < FAILING
    assert result.outputs["failed-tests"] == " ".join(first)
    assert result.commands("warning")[-1] == (
        f"failed-tests names the first {len(first)} of {FAILING} failed tests: GitHub caps a "
        "step output's size. To rerun every one, pass the JUnit files to rerun-failed-from: "
        "it reads them all from there"
    )
    assert result.summary.splitlines()[0] == (
        f"### ❌ {FAILING} failed, {PASSING} passed in 3 h 25 min 11 s"
    )
    assert f"| {PASSING} | {FAILING} | 0 | 0 | 0 | {FAILING + PASSING} | 3 h 25 min 11 s |" in (
        result.summary
    )
    assert "`tests/test_orders.py::TestOrders::test_order_0[eu-west]`" in result.summary
    # A rerun reads the JUnit file itself: every failed test, not only those named.
    assert failed_node_ids(junit, tmp_path) == ids


def test_the_reader_keeps_only_what_the_outputs_show(tmp_path: Path) -> None:
    ids = _ids(tmp_path)
    junit = tmp_path / "junit.xml"
    _write(junit, FAILING)
    reader = Reader(tmp_path, keep=50, scrub=str)
    reader.read(junit, "junit.xml")
    report = reader.report()
    assert report.counts.failed == FAILING and report.counts.passed == PASSING
    assert [f.node_id for f in report.failures] == ids[:50]
    named, failed = report.failed_tests()
    assert failed == FAILING
    assert report.failed_ids == named == ids[: len(named)]
    assert len(report.slowest) == 10
    assert report.slowest[0] == (0.1, "tests/test_orders.py::test_ok_0", "passed")
    # On a tie, the earlier tests.
    assert report.slowest[PASSING:] == [(0.01, node_id, "failed") for node_id in ids[:5]]
    assert report.shards[0].suites[0].tests == FAILING + PASSING
    assert report.shards[0].suites[0].failures == FAILING


def test_a_teardown_error_far_from_its_failure_is_still_one_test(tmp_path: Path) -> None:
    # Within the window of failed tests remembered (xdist writes the two a few reports apart).
    junit = tmp_path / "junit.xml"
    apart = TEARDOWN_WINDOW - 1
    with junit.open("w", encoding="utf-8") as out:
        out.write('<testsuite name="pytest">')
        for n in range(apart + 1):
            out.write(f'<testcase classname="t" name="test_{n}"><failure message="x"/></testcase>')
        out.write(
            '<testcase classname="t" name="test_0"><error message="failed on teardown with '
            '&quot;OSError: x&quot;"/></testcase></testsuite>'
        )
    reader = Reader(tmp_path, keep=50, scrub=str)
    reader.read(junit, "junit.xml")
    report = reader.report()
    assert (report.counts.failed, report.counts.errors) == (apart + 1, 0)
    assert report.failures[0].notes == ['failed on teardown with "OSError: x"']
    assert report.shards[0].suites[0].errors == 1  # JUnit's own count: one error element
