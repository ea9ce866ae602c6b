"""`azpytest report` as a workflow step, on JUnit files pytest really wrote (pytester):
the job summary, the annotations and the outputs, line by line; merging shards; bad files;
the summary's 1 MiB cap; masked values."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Step = Callable[..., Any]  # the actions_step fixture (tests/conftest.py); it returns a StepResult

HELPERS = """\
def assert_total(cart, expected):
    total = sum(cart)
    assert total == expected, f"total {total} != {expected}"
"""

SUITE = """\
import time

import pytest

from shop.helpers import assert_total


@pytest.fixture
def database():
    raise ConnectionError("database unreachable")


def test_add():
    time.sleep(0.05)
    assert 1 + 1 == 2


def test_total():
    cart = [1, 2]
    assert_total(cart, 4)


def test_query(database):
    pass


def test_later():
    pytest.skip("needs AKS")


@pytest.mark.xfail(reason="bug 12")
def test_known_bug():
    assert False


@pytest.mark.parametrize("path", ["ok", "a/b", "x::y", "ünï"])
def test_ids(path):
    assert path == "ok"


class TestCheckout:
    def test_pay(self):
        assert "paid" == "pending"
"""

# In fnmatch patterns, `[[]` is a literal `[` (parametrized ids hold brackets).


def _line_of(pytester: pytest.Pytester, text: str) -> int:
    source = (pytester.path / "shop" / "test_shop.py").read_text().splitlines()
    return next(n for n, line in enumerate(source, 1) if text in line)


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    """A small suite in a package: passes, a failure inside a helper of another module, an
    error in a fixture, a skip, an xfail, parametrized ids with `/`, `::` and unicode."""
    pytester.mkpydir("shop")
    (pytester.path / "shop" / "helpers.py").write_text(HELPERS)
    (pytester.path / "shop" / "test_shop.py").write_text(SUITE)
    return pytester


def _junit(pytester: pytest.Pytester, name: str, *args: str) -> Path:
    path = pytester.path / name
    pytester.runpytest("-p", "no:azpytest", "-p", "no:cacheprovider", f"--junitxml={path}", *args)
    assert path.is_file()
    return path


def _annotations(result: Any) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(("::error", "::notice"))]


def test_summary_annotations_and_outputs_of_a_real_run(
    shop: pytest.Pytester, actions_step: Step
) -> None:
    junit = _junit(shop, "junit.xml")
    result = actions_step(None, "report", str(junit), "--root", str(shop.path))

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    total_line = _line_of(shop, "assert_total(cart, 4)")
    fixture_line = _line_of(shop, 'raise ConnectionError("database unreachable")')
    ids_line = _line_of(shop, 'assert path == "ok"')
    pay_line = _line_of(shop, 'assert "paid" == "pending"')
    # Failures first, in file order; the helper's failure at the test's call, not in helpers.py.
    # Titles are node ids as pytest wrote them: `/`, `::` (escaped for the runner), unicode.
    assert _annotations(result) == [
        f"::error file=shop/test_shop.py,line={total_line},"
        "title=shop/test_shop.py%3A%3Atest_total::"
        "AssertionError: total 3 != 4",
        f"::error file=shop/test_shop.py,line={ids_line},"
        "title=shop/test_shop.py%3A%3Atest_ids[a/b]::"
        "AssertionError: assert 'a/b' == 'ok'%0A  - ok%0A  + a/b",
        f"::error file=shop/test_shop.py,line={ids_line},"
        "title=shop/test_shop.py%3A%3Atest_ids[x%3A%3Ay]::"
        "AssertionError: assert 'x::y' == 'ok'%0A  - ok%0A  + x::y",
        f"::error file=shop/test_shop.py,line={ids_line},"
        "title=shop/test_shop.py%3A%3Atest_ids[\\xfcn\\xef]::"
        "AssertionError: assert 'ünï' == 'ok'%0A  - ok%0A  + ünï",
        f"::error file=shop/test_shop.py,line={pay_line},"
        "title=shop/test_shop.py%3A%3ATestCheckout%3A%3Atest_pay::"
        "AssertionError: assert 'paid' == 'pending'%0A  - pending%0A  + paid",
        f"::error file=shop/test_shop.py,line={fixture_line},"
        "title=shop/test_shop.py%3A%3Atest_query::"
        'failed on setup with "ConnectionError: database unreachable"%0A'
        "ConnectionError: database unreachable",
    ]
    pytest.LineMatcher(result.stdout.splitlines()).fnmatch_lines(
        ["azpytest report: 5 failed, 1 error, 2 passed, 1 skipped, 1 xfailed in *.* s"]
    )

    summary = pytest.LineMatcher(result.summary.splitlines())
    summary.fnmatch_lines(
        [
            "### ❌ 5 failed, 1 error, 2 passed, 1 skipped, 1 xfailed in *.* s",
            "",
            "| Passed | Failed | Errors | Skipped | xfailed | Total | Duration |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            "| 2 | 5 | 1 | 1 | 1 | 10 | *.* s |",
            "",
            "#### Failures",
            "",
            "| Test | Location | Message | Duration |",
            "| --- | --- | --- | ---: |",
            f"| `shop/test_shop.py::test_total` | `shop/test_shop.py:{total_line}` "
            "| AssertionError: total 3 != 4 | *.* s |",
            f"| `shop/test_shop.py::test_ids[[]a/b]` | `shop/test_shop.py:{ids_line}` "
            "| AssertionError: assert 'a/b' == 'ok' | *.* s |",
            f"| `shop/test_shop.py::test_ids[[]x::y]` | `shop/test_shop.py:{ids_line}` "
            "| AssertionError: assert 'x::y' == 'ok' | *.* s |",
            f"| `shop/test_shop.py::test_ids[[]\\xfcn\\xef]` | `shop/test_shop.py:{ids_line}` "
            "| AssertionError: assert 'ünï' == 'ok' | *.* s |",
            f"| `shop/test_shop.py::TestCheckout::test_pay` | `shop/test_shop.py:{pay_line}` "
            "| AssertionError: assert 'paid' == 'pending' | *.* s |",
            f"| `shop/test_shop.py::test_query` | `shop/test_shop.py:{fixture_line}` "
            '| failed on setup with "ConnectionError: database unreachable" | *.* s |',
            "",
            "<details><summary><code>shop/test_shop.py::test_total</code> — "
            f"shop/test_shop.py:{total_line}</summary>",
            "",
            "```text",
            "def test_total():",
            "        cart = [1, 2]",
            ">       assert_total(cart, 4)",
            "",
            f"shop/test_shop.py:{total_line}: ",
            "_ _ _ _ *",
            "",
            "cart = [1, 2], expected = 4",
            "",
            "    def assert_total(cart, expected):",
            "        total = sum(cart)",
            '>       assert total == expected, f"total {total} != {expected}"',
        ],
        consecutive=True,
    )
    summary.fnmatch_lines(
        [
            "E       AssertionError: total 3 != 4",
            "",
            "shop/helpers.py:3: AssertionError",
            "```",
            "",
            "</details>",
        ],
        consecutive=True,
    )
    summary.fnmatch_lines(
        [
            "#### Slowest * tests",
            "",
            "| Test | Outcome | Duration |",
            "| --- | --- | ---: |",
            "| `shop/test_shop.py::test_add` | passed | 0.0* s |",
        ],
        consecutive=True,
    )
    assert "#### Shards" not in result.summary

    assert result.outputs == {
        "total": "10",
        "passed": "2",
        "failed": "5",
        "errors": "1",
        "skipped": "1",
        "junit-path": str(junit),
        "artifacts-path": "",
        # Space-separated, in file order, unquoted.
        "failed-tests": (
            "shop/test_shop.py::test_total shop/test_shop.py::test_query "
            "shop/test_shop.py::test_ids[a/b] shop/test_shop.py::test_ids[x::y] "
            "shop/test_shop.py::test_ids[\\xfcn\\xef] shop/test_shop.py::TestCheckout::test_pay"
        ),
    }


def test_failed_tests_output_reruns_exactly_those(
    shop: pytest.Pytester, actions_step: Step
) -> None:
    junit = _junit(shop, "junit.xml")
    failed = actions_step(None, "report", str(junit), "--root", str(shop.path))
    rerun = shop.runpytest("-p", "no:azpytest", *failed.outputs["failed-tests"].split(" "))
    rerun.assert_outcomes(failed=5, errors=1)


def test_a_passing_run(pytester: pytest.Pytester, actions_step: Step) -> None:
    pytester.makepyfile(test_ok="def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    (pytester.path / "run").mkdir()
    (pytester.path / "run" / "artifacts").mkdir()
    junit = _junit(pytester, "run/junit.xml")
    result = actions_step(None, "report", str(junit), "--root", str(pytester.path))
    assert result.returncode == 0
    assert result.summary.splitlines()[0].startswith("### ✅ 2 passed in ")
    assert "#### Failures" not in result.summary
    assert _annotations(result) == []
    assert result.outputs["failed-tests"] == ""
    assert result.outputs["artifacts-path"] == str(pytester.path / "run" / "artifacts")


def test_fail_on_failure_exits_1(shop: pytest.Pytester, actions_step: Step) -> None:
    junit = _junit(shop, "junit.xml")
    result = actions_step(None, "report", str(junit), "--fail-on-failure", "--root", str(shop.path))
    assert result.returncode == 1
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("value", "code"),
    [("true", 1), ("True", 1), ("TRUE", 1), (" true\n", 1), ("false", 0)]
    + [(typo, 2) for typo in ("treu", "yes", "1", "on", "no", "0")],
)
def test_fail_on_test_failure_as_the_action_passes_it(
    shop: pytest.Pytester, actions_step: Step, value: str, code: int
) -> None:
    # A boolean is true or false: a typo is bad input (exit 2), never a silent green.
    junit = _junit(shop, "junit.xml")
    env = {"AZPYTEST_FAIL_ON_TEST_FAILURE": value}
    result = actions_step(None, "report", str(junit), "--root", str(shop.path), env=env)
    assert result.returncode == code
    bad = f"azpytest report: error: fail-on-test-failure: {value!r} is not true or false\n"
    assert result.stderr == (bad if code == 2 else "")


ALL_SKIPPED = """
import os
import pytest

CLUSTER = os.environ.get("AKS_CLUSTER_NAME")
needs_cluster = pytest.mark.skipif(CLUSTER is None, reason="AKS_CLUSTER_NAME is not set")

@needs_cluster
def test_pods(): pass

@needs_cluster
def test_services(): pass

@needs_cluster
def test_ingress(): pass

def test_feature_flag():
    pytest.skip("flag off")
"""


@pytest.mark.parametrize("allow", ["", "true"])
def test_every_test_skipped_is_not_green_and_the_reasons_are_listed(
    pytester: pytest.Pytester, actions_step: Step, allow: str
) -> None:
    pytester.makepyfile(test_cluster=ALL_SKIPPED)
    junit = _junit(pytester, "junit.xml")
    env = {"AZPYTEST_FAIL_ON_TEST_FAILURE": "true", "AZPYTEST_ALLOW_ALL_SKIPPED": allow}
    result = actions_step(None, "report", str(junit), "--root", str(pytester.path), env=env)

    assert result.summary.startswith("### ⚠️ no test ran: 4 skipped in "), result.summary
    pytest.LineMatcher(result.summary.splitlines()).fnmatch_lines(
        [
            "#### Skipped (4)",
            "",
            "| Reason | Tests |",
            "| --- | ---: |",
            "| AKS_CLUSTER_NAME is not set | 3 |",
            "| flag off | 1 |",
        ]
    )
    if allow:
        assert result.returncode == 0
        assert result.commands("error") == []
    else:
        assert result.returncode == 1
        assert result.commands("error") == [
            "All 4 tests were skipped, so nothing was tested (the most frequent reason: "
            "AKS_CLUSTER_NAME is not set). The job summary lists every reason. Fix what skips "
            "them, or set allow-all-skipped: true if a run with every test skipped is expected."
        ]


def test_a_run_with_some_skips_lists_them_and_stays_green(
    shop: pytest.Pytester, actions_step: Step
) -> None:
    junit = _junit(shop, "junit.xml")
    result = actions_step(None, "report", str(junit), "--root", str(shop.path))
    assert "#### Skipped (1)" in result.summary
    assert "no test ran" not in result.summary


def test_annotations_are_capped_with_a_notice(
    pytester: pytest.Pytester, actions_step: Step
) -> None:
    pytester.makepyfile(
        test_many="""
        import pytest

        @pytest.fixture
        def broken():
            raise OSError("no disk")

        def test_first(broken):
            pass

        @pytest.mark.parametrize("n", range(12))
        def test_n(n):
            assert n < 0
        """
    )
    junit = _junit(pytester, "junit.xml")
    result = actions_step(None, "report", str(junit), "--root", str(pytester.path))
    errors = [line for line in _annotations(result) if line.startswith("::error")]
    assert len(errors) == 10
    # Failures come before the error, though the error came first in the file.
    assert all("title=test_many.py%3A%3Atest_n[" in line for line in errors)
    assert [line for line in _annotations(result) if line.startswith("::notice")] == [
        "::notice title=azpytest report::3 more failures are listed in the job summary"
    ]
    result = actions_step(
        None, "report", str(junit), "--root", str(pytester.path), "--max-annotations", "2"
    )
    assert len([line for line in _annotations(result) if line.startswith("::error")]) == 2
    assert result.commands("notice") == ["11 more failures are listed in the job summary"]


def test_merging_three_shards(shop: pytest.Pytester, actions_step: Step) -> None:
    whole = _junit(shop, "whole.xml")
    shards = [
        _junit(shop, "junit-1.xml", "-k", "test_add or test_total or test_query"),
        _junit(shop, "junit-2.xml", "-k", "test_later or test_known_bug"),
        _junit(shop, "junit-3.xml", "-k", "test_ids or TestCheckout"),
    ]
    merged = shop.path / "merged.xml"
    result = actions_step(
        None, "report", f"{shop.path}/junit-*.xml", "--merge", str(merged), "--root", str(shop.path)
    )
    assert result.returncode == 0, result.stderr

    def cases(path: Path) -> set[tuple[str, str, str]]:
        found = set()
        for case in ET.parse(path).getroot().iter("testcase"):
            outcome = ",".join(sorted(child.tag for child in case if child.tag != "system-out"))
            found.add((case.get("classname", ""), case.get("name", ""), outcome))
        return found

    assert cases(merged) == cases(whole)
    root = ET.parse(merged).getroot()
    assert root.tag == "testsuites"
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "10",
        "failures": "5",
        "errors": "1",
        "skipped": "2",
    }
    suites = list(root)
    assert [suite.get("tests") for suite in suites] == ["3", "2", "5"]
    assert sum(float(suite.get("time", "0")) for suite in suites) == pytest.approx(
        float(root.get("time", "0")), abs=0.002
    )

    assert result.outputs["junit-path"] == str(merged)
    assert result.outputs["total"] == "10"
    assert result.outputs["failed-tests"].split(" ") == [
        "shop/test_shop.py::test_total",
        "shop/test_shop.py::test_query",
        "shop/test_shop.py::test_ids[a/b]",
        "shop/test_shop.py::test_ids[x::y]",
        "shop/test_shop.py::test_ids[\\xfcn\\xef]",
        "shop/test_shop.py::TestCheckout::test_pay",
    ]
    pytest.LineMatcher(result.summary.splitlines()).fnmatch_lines(
        [
            "### ❌ 5 failed, 1 error, 2 passed, 1 skipped, 1 xfailed in *",
            "#### Shards (3 JUnit files)",
            "",
            "| JUnit file | Tests | Passed | Failed | Errors | Skipped | xfailed | Duration |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| `{shards[0].name}` | 3 | 1 | 1 | 1 | 0 | 0 | * s |",
            f"| `{shards[1].name}` | 2 | 0 | 0 | 0 | 1 | 1 | * s |",
            f"| `{shards[2].name}` | 5 | 1 | 4 | 0 | 0 | 0 | * s |",
        ]
    )

    # The merged file reads back to the same report.
    again = actions_step(None, "report", str(merged), "--root", str(shop.path))
    assert {k: v for k, v in again.outputs.items() if k != "junit-path"} == {
        k: v for k, v in result.outputs.items() if k != "junit-path"
    }
    # And pytest-style readers take it: pytest's own schema check is in its test suite; here,
    # every element and attribute JUnit readers use is present.
    for suite in suites:
        assert suite.tag == "testsuite"
        for case in suite.iter("testcase"):
            assert case.get("classname") and case.get("name") and case.get("time")


def test_a_cut_short_junit_file_exits_2_with_one_line(
    shop: pytest.Pytester, actions_step: Step
) -> None:
    junit = _junit(shop, "junit.xml")
    broken = shop.path / "broken.xml"
    content = junit.read_text()
    broken.write_text(content[: len(content) // 2])
    result = actions_step(None, "report", str(junit), str(broken), "--root", str(shop.path))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    pytest.LineMatcher(lines).fnmatch_lines(
        [
            f"azpytest report: error: {broken}: not well-formed XML at line *, column * "
            "(*): the file may be cut short (a cancelled run) or not be JUnit XML"
        ]
    )
    assert result.commands("error") == [lines[0].removeprefix("azpytest report: error: ")]
    assert result.summary == ""
    assert result.outputs == {}


def test_a_missing_junit_file_exits_2_with_one_line(actions_step: Step, tmp_path: Path) -> None:
    result = actions_step(None, "report", str(tmp_path / "nope.xml"), actions=False)
    assert result.returncode == 2
    assert result.stderr == (
        f"azpytest report: error: {tmp_path / 'nope.xml'}: no such file: run pytest with "
        "--junitxml=PATH first (azpytest run does), or pass the JUnit file's path\n"
    )
    assert result.stdout == ""


def test_outside_actions_a_text_summary_from_the_run_folder(
    shop: pytest.Pytester, actions_step: Step
) -> None:
    junit = _junit(shop, "junit.xml")
    result = actions_step(None, "report", "--help", actions=False)
    assert "--merge OUT" in result.stdout
    # Without a JUNIT argument: $AZPYTEST_RUN_DIR/junit.xml.
    run_dir = shop.path / "run"
    run_dir.mkdir()
    (run_dir / "junit.xml").write_bytes(junit.read_bytes())
    result = actions_step(
        None,
        "report",
        "--root",
        str(shop.path),
        actions=False,
        env={"AZPYTEST_RUN_DIR": str(run_dir)},
    )
    assert result.returncode == 0
    total_line = _line_of(shop, "assert_total(cart, 4)")
    pytest.LineMatcher(result.stdout.splitlines()).fnmatch_lines(
        [
            "azpytest report: 5 failed, 1 error, 2 passed, 1 skipped, 1 xfailed in *",
            f"  FAILED shop/test_shop.py::test_total (shop/test_shop.py:{total_line}): "
            "AssertionError: total 3 != 4",
            "  FAILED shop/test_shop.py::test_ids[[]a/b] (*): AssertionError: *",
            "  FAILED shop/test_shop.py::test_ids[[]x::y] (*): AssertionError: *",
            "  FAILED shop/test_shop.py::test_ids[[]\\xfcn\\xef] (*): AssertionError: *",
            "  FAILED shop/test_shop.py::TestCheckout::test_pay (*): AssertionError: *",
            "  ERROR  shop/test_shop.py::test_query (*): failed on setup with *",
            f"junit: {run_dir / 'junit.xml'}",
        ],
        consecutive=True,
    )
    assert "::" not in "".join(line[:2] for line in result.stdout.splitlines())
    assert result.outputs == {}


def test_masked_values_never_appear(
    pytester: pytest.Pytester, actions_step: Step, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-Passw0rd!"
    pytester.makepyfile(
        test_secret=f"""
        import os
        import pytest

        def test_login():
            password = os.environ["SHOP_DB_PASSWORD"]
            print("connecting with", password)
            assert password == "wrong", f"login refused for password {{password}}"

        @pytest.mark.parametrize("dsn", ["postgres://app:{secret}@db"])
        def test_dsn(dsn):
            raise ConnectionError(dsn)
        """
    )
    run_dir = pytester.path / "run"
    run_dir.mkdir()
    (run_dir / "prepared.json").write_text(json.dumps({"masked_env": ["SHOP_DB_PASSWORD"]}))
    monkeypatch.setenv("SHOP_DB_PASSWORD", secret)
    junit = _junit(pytester, "run/junit.xml", "-o", "junit_logging=system-out")
    assert secret in junit.read_text()  # pytest wrote it: report must not

    merged = run_dir / "merged.xml"
    result = actions_step(
        None,
        "report",
        str(junit),
        "--merge",
        str(merged),
        "--root",
        str(pytester.path),
        env={"AZPYTEST_RUN_DIR": str(run_dir), "SHOP_DB_PASSWORD": secret},
    )
    assert result.returncode == 0, result.stderr
    everything = "\n".join(
        [result.written(), merged.read_text(), json.dumps(result.outputs, ensure_ascii=False)]
    )
    assert secret not in everything
    assert "login refused for password ***" in result.summary
    assert "`test_secret.py::test_dsn[postgres://app:***@db]`" in result.summary
    assert "connecting with ***" in merged.read_text()
    assert "::error" not in result.stdout  # merging: the shards annotated their failures

    shard = actions_step(
        None,
        "report",
        str(junit),
        "--root",
        str(pytester.path),
        env={"AZPYTEST_RUN_DIR": str(run_dir), "SHOP_DB_PASSWORD": secret},
    )
    assert secret not in shard.written()
    assert (
        "title=test_secret.py%3A%3Atest_login::AssertionError: login refused for password ***"
        in (shard.stdout)
    )


def test_summary_stays_under_1_mib_with_20000_long_failures(
    actions_step: Step, tmp_path: Path
) -> None:
    junit = tmp_path / "junit.xml"
    trace = "".join(f"E       assert {'x' * 150} == {n}\n" for n in range(12))
    with junit.open("w", encoding="utf-8") as out:
        out.write('<testsuites><testsuite name="pytest" time="600">\n')
        for n in range(20_000):
            param = f"{'long-parameter-' * 20}{n}"
            out.write(
                f'<testcase classname="tests.test_big" name="test_case[{param}]" time="0.03">'
                f'<failure message="AssertionError: {"y" * 1000} {n}">'
                f"{trace}tests/test_big.py:{n % 500 + 1}: AssertionError</failure></testcase>\n"
            )
        out.write("</testsuite></testsuites>\n")
    result = actions_step(None, "report", str(junit))
    assert result.returncode == 0
    assert len(result.summary.encode()) < 1024 * 1024
    assert result.summary.startswith("### ❌ 20000 failed in 10 min 0 s\n")
    # The output holds fewer ids than failed, and every message about it says the same.
    named = len(result.outputs["failed-tests"].split(" "))
    assert 0 < named < 20_000
    assert (
        f"_…and 19950 more; the step's `failed-tests` output names the first {named} of 20000._"
        in result.summary
    )
    assert len(_annotations(result)) == 11
    assert result.commands("notice") == [
        "19990 more failures: the job summary lists the first 50 failures and the step's "
        f"failed-tests output names the first {named} of 20000"
    ]
    assert result.outputs["failed"] == "20000"
    assert result.commands("warning") == [
        f"failed-tests names the first {named} of 20000 failed tests: GitHub caps a step "
        "output's size"
    ]
    assert len(result.outputs["failed-tests"].encode()) <= 256 * 1024

    # A summary file already nearly full: the failures are cut to fit, and say so.
    summary = tmp_path / "summary.md"
    summary.write_text("x" * (1024 * 1024 - 40 * 1024) + "\n")
    result = actions_step(None, "report", str(junit), env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0
    assert summary.stat().st_size < 1024 * 1024
    assert (
        "_Some failures are left out to keep this summary under GitHub's 1 MiB cap._"
        in summary.read_text()
    )


WRITES_ARTIFACTS = """
import os
import random
from pathlib import Path

def test_login():
    password = os.environ["SHOP_DB_PASSWORD"]
    folder = Path(os.environ["SHOP_ARTIFACTS"])
    noise = random.Random(13).randbytes(4096)
    (folder / "notes.txt").write_text(f"connecting with {password} to the shop\\n")
    (folder / f"dsn-{password}.log").write_text("no secret inside\\n")
    (folder / f"by-{password}").mkdir()
    (folder / f"by-{password}" / "plain.txt").write_text("plain\\n")
    (folder / "raw.bin").write_bytes(noise + password.encode() + noise)
    (folder / "wide.bin").write_bytes(noise + password.encode("utf-16-le") + noise)
    (folder / "clean.bin").write_bytes(noise)
    (folder / "clean.txt").write_text("nothing to hide\\n")
    (folder / "passwd").symlink_to("/etc/passwd")
    assert password == "wrong"
"""


def _fragments(secret: str) -> list[str]:
    return [secret[i : i + 8] for i in range(len(secret) - 7)]


def _artifacts_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, secret: str
) -> tuple[Path, Path]:
    """A failing test that writes secret-bearing files, names and a link into the artifacts
    folder beside its JUnit file: the run folder and the JUnit file."""
    pytester.makepyfile(test_files=WRITES_ARTIFACTS)
    run_dir = pytester.path / "run"
    (run_dir / "artifacts").mkdir(parents=True)
    (run_dir / "prepared.json").write_text(json.dumps({"masked_env": ["SHOP_DB_PASSWORD"]}))
    monkeypatch.setenv("SHOP_DB_PASSWORD", secret)
    monkeypatch.setenv("SHOP_ARTIFACTS", str(run_dir / "artifacts"))
    junit = _junit(pytester, "run/junit.xml")
    return run_dir, junit


def test_artifacts_leave_scrubbed_and_what_cannot_be_is_withheld(
    pytester: pytest.Pytester, actions_step: Step, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-Passw0rd!"
    run_dir, junit = _artifacts_run(pytester, monkeypatch, secret)
    folder = run_dir / "artifacts"
    noise = (folder / "clean.bin").read_bytes()
    before = {name: (folder / name).read_bytes() for name in ("clean.bin", "clean.txt")}

    result = actions_step(
        None,
        "report",
        str(junit),
        "--root",
        str(pytester.path),
        env={"AZPYTEST_RUN_DIR": str(run_dir), "SHOP_DB_PASSWORD": secret},
    )

    assert result.returncode == 0, result.stderr
    assert result.outputs["artifacts-path"] == str(folder)
    paths = sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))
    assert paths == [
        "by-[masked]",
        "by-[masked]/plain.txt",
        "clean.bin",
        "clean.txt",
        "dsn-[masked].log",
        "notes.txt",
        "raw.bin",
        "wide.bin.withheld.txt",
    ]
    # No byte and no path holds 8 characters of the value, in UTF-8, UTF-16 or UTF-32.
    for path in folder.rglob("*"):
        data = path.read_bytes() if path.is_file() else b""
        for fragment in _fragments(secret):
            assert fragment not in str(path)
            for encoding in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
                assert fragment.encode(encoding) not in data, (path, encoding)
    assert (folder / "notes.txt").read_text() == "connecting with *** to the shop\n"
    assert (folder / "raw.bin").read_bytes() == noise + b"***" + noise
    assert (folder / "dsn-[masked].log").read_text() == "no secret inside\n"
    assert (folder / "by-[masked]" / "plain.txt").read_text() == "plain\n"
    assert (folder / "wide.bin.withheld.txt").read_text() == (
        "azpytest withheld wide.bin from the upload: it holds a masked value as UTF-16 text, "
        "which is not scrubbed.\n"
    )
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert Path("/etc/passwd").is_file()  # the link went, not what it pointed to
    assert result.commands("notice") == [
        "Failure artifacts: withheld 1 file that may hold a masked value, each replaced by "
        "<name>.withheld.txt saying why: wide.bin; removed 1 symbolic link or special file "
        "(never followed out of the folder): passwd."
    ]


def test_without_masked_values_artifacts_are_kept_but_links(
    pytester: pytest.Pytester, actions_step: Step, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The merge job knows no secret: the files go as they are, a link never.
    secret = "s3cr3t-Passw0rd!"
    run_dir, junit = _artifacts_run(pytester, monkeypatch, secret)
    folder = run_dir / "artifacts"
    before = {
        str(path.relative_to(folder)): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file() and not path.is_symlink()
    }
    result = actions_step(None, "report", str(junit), "--root", str(pytester.path))
    assert result.returncode == 0, result.stderr
    after = {
        str(path.relative_to(folder)): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }
    assert after == before
    assert not (folder / "passwd").is_symlink()
    assert result.commands("notice") == [
        "Failure artifacts: removed 1 symbolic link or special file "
        "(never followed out of the folder): passwd."
    ]
