"""Pointers that land and reruns that behave, through `azpytest run` and `azpytest report`
as workflow steps: the annotation names the test's file from the repository root and its
line whatever `working-directory` and `--tb`; a collection error points at its file and
`failed-tests` holds ids a rerun can run; nothing to rerun, empty shards and re-run
attempts give the right verdict."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Step = Callable[..., Any]
IDENTITY = {
    "AZPYTEST_TENANT_ID": "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d",
    "AZPYTEST_CLIENT_ID": "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b",
}

HELPERS = """\
def check(count):
    assert count == 3, "stock mismatch"
"""
STOCK = """\
import pytest

from helpers import check


def test_count():
    stock = 2
    check(stock)


def test_direct():
    assert 1 + 1 == 3


def test_fine():
    pass
"""
CALL_LINE = 8  # `check(stock)`: the test's call into the helper (another file) that failed
ASSERT_LINE = 12  # `assert 1 + 1 == 3`


def repository(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    """A checkout whose suite lives in services/inventory (its own pytest.ini)."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    suite = repo / "services" / "inventory"
    (suite / "tests").mkdir(parents=True)
    (suite / "pytest.ini").write_text("[pytest]\n")
    for name, text in {"helpers.py": HELPERS, **files}.items():
        (suite / "tests" / name).write_text(textwrap.dedent(text))
    return repo, suite


def run_dir(result: Any) -> Path:
    return Path(result.runner_temp, "azpytest", "12345678901-1-test")


def run_and_report(
    actions_step: Step, repo: Path, suite: Path, **more: str
) -> tuple[Any, Any, Path]:
    env = {
        **IDENTITY,
        "GITHUB_WORKSPACE": str(repo),
        "AZPYTEST_WORKING_DIRECTORY": str(suite),
        "AZPYTEST_DEFER_TEST_FAILURE": "true",
        "AZPYTEST_FAIL_ON_TEST_FAILURE": "true",
        **more,
    }
    ran = actions_step(None, "run", env=env)
    junit = run_dir(ran) / "junit.xml"
    report = actions_step(None, "report", str(junit), env=env)
    return ran, report, junit


@pytest.mark.parametrize("style", ["auto", "line", "short", "no", "native"])
def test_annotations_land_on_the_repository_path_and_line_whatever_the_tb_style(
    tmp_path: Path, actions_step: Step, style: str
) -> None:
    repo, suite = repository(tmp_path, {"test_stock.py": STOCK})
    ran, report, _ = run_and_report(actions_step, repo, suite, AZPYTEST_PYTEST_ARGS=f"--tb={style}")
    assert ran.returncode == 0, ran.stdout + ran.stderr  # deferred to the report
    assert report.returncode == 1
    errors = [line for line in report.stdout.splitlines() if line.startswith("::error ")]
    where = "services/inventory/tests/test_stock.py"
    assert errors[0].startswith(f"::error file={where},line={CALL_LINE},title=tests/test_stock.py")
    assert errors[1].startswith(
        f"::error file={where},line={ASSERT_LINE},title=tests/test_stock.py"
    )
    assert f"{where}:{CALL_LINE}" in report.summary
    # Ids as a rerun from the same folder takes them.
    assert report.outputs["failed-tests"] == (
        "tests/test_stock.py::test_count tests/test_stock.py::test_direct"
    )


def test_a_collection_error_points_at_its_file_and_reruns(
    tmp_path: Path, actions_step: Step
) -> None:
    repo, suite = repository(
        tmp_path,
        {
            "test_broken.py": "import not_installed_anywhere\n",
            "test_ok.py": "def test_ok(): pass\n",
        },
    )
    ran, report, junit = run_and_report(actions_step, repo, suite)
    assert ran.returncode == 2  # pytest: interrupted by the collection error
    assert report.returncode == 1
    errors = [line for line in report.stdout.splitlines() if line.startswith("::error ")]
    assert errors[0].startswith(
        "::error file=services/inventory/tests/test_broken.py,line=1,title=tests/test_broken.py::"
    )
    assert "`not_installed_anywhere` is not installed where pytest ran: install" in errors[0]
    assert report.outputs["failed-tests"] == "tests/test_broken.py"

    rerun = actions_step(
        None,
        "run",
        env={
            **IDENTITY,
            "AZPYTEST_WORKING_DIRECTORY": str(suite),
            "AZPYTEST_RERUN_FAILED_FROM": str(junit),
        },
    )
    assert "rerunning the 1 failed test(s)" in rerun.stdout
    assert "file or directory not found" not in rerun.stdout + rerun.stderr
    assert rerun.returncode == 2  # the same collection error again, not pytest's exit 4


def test_rerunning_a_run_with_no_failures_is_green_and_says_why(
    tmp_path: Path, actions_step: Step
) -> None:
    repo, suite = repository(tmp_path, {"test_ok.py": "def test_ok(): pass\n"})
    first, _, junit = run_and_report(actions_step, repo, suite)
    assert first.returncode == 0
    earlier = tmp_path / "earlier.xml"
    earlier.write_bytes(junit.read_bytes())

    ran, report, rerun_junit = run_and_report(
        actions_step, repo, suite, AZPYTEST_RERUN_FAILED_FROM=str(earlier)
    )
    assert ran.returncode == 0
    assert "earlier.xml lists no failed tests: nothing to rerun" in ran.stdout
    assert report.returncode == 0, report.stdout
    said = "Nothing to rerun: earlier.xml lists no failed test, so no test ran"
    assert report.commands("notice") == [f"{said}; the earlier run's results stand."]
    assert said in report.summary
    assert report.summary.startswith("### ✅ no tests ran")

    merged = actions_step(None, "report", str(rerun_junit), "--merge", str(tmp_path / "merged.xml"))
    assert merged.returncode == 0, merged.stdout


def test_a_rerun_file_that_is_not_junit_is_bad_input(tmp_path: Path, actions_step: Step) -> None:
    _repo, suite = repository(tmp_path, {"test_ok.py": "def test_ok(): pass\n"})
    page = tmp_path / "report.html"
    page.write_text("<html><body>3 failed</body></html>\n")
    result = actions_step(
        None,
        "run",
        env={
            **IDENTITY,
            "AZPYTEST_WORKING_DIRECTORY": str(suite),
            "AZPYTEST_RERUN_FAILED_FROM": str(page),
        },
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (said,) = result.commands("error")
    assert said.endswith(
        "rerun-failed-from: the root element is <html>, not <testsuites> or <testsuite>: "
        "not a JUnit XML file (pytest writes one with --junitxml=PATH)"
    )


def test_three_shards_rerunning_one_failure_leave_two_empty_shards_green(
    tmp_path: Path, actions_step: Step
) -> None:
    repo, suite = repository(tmp_path, {"test_stock.py": STOCK.replace("1 + 1 == 3", "True")})
    _, _, junit = run_and_report(actions_step, repo, suite)
    earlier = tmp_path / "earlier.xml"
    earlier.write_bytes(junit.read_bytes())

    shards = []
    for index in range(3):
        ran, report, shard_junit = run_and_report(
            actions_step,
            repo,
            suite,
            AZPYTEST_RERUN_FAILED_FROM=str(earlier),
            AZPYTEST_SHARD_COUNT="3",
            AZPYTEST_SHARD_INDEX=str(index),
        )
        assert ran.returncode == 0, ran.stdout
        shards.append((ran, report, shard_junit))
    empty = [report for ran, report, _ in shards if "got no test" in ran.stdout]
    failing = [report for ran, report, _ in shards if "got no test" not in ran.stdout]
    assert len(empty) == 2 and len(failing) == 1
    for report in empty:
        assert report.returncode == 0
        (notice,) = report.commands("notice")
        assert "got no test: the suite (or its rerun) has fewer tests than shards" in notice
    assert failing[0].returncode == 1
    assert failing[0].outputs["failed-tests"] == "tests/test_stock.py::test_count"

    merged = actions_step(
        None,
        "report",
        *(str(path) for _, _, path in shards),
        "--merge",
        str(tmp_path / "merged.xml"),
        env={"AZPYTEST_FAIL_ON_TEST_FAILURE": "true"},
    )
    assert merged.returncode == 1
    assert merged.outputs["failed"] == "1" and merged.outputs["total"] == "1"


def _junit(path: Path, cases: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>\n')
    return path


def test_the_merge_keeps_the_latest_attempt_of_each_shard(
    tmp_path: Path, actions_step: Step
) -> None:
    shards = tmp_path / "shards"
    failed = (
        '<testcase classname="tests.test_a" name="test_flaky"><failure message="boom"/></testcase>'
    )
    passed = '<testcase classname="tests.test_a" name="test_flaky"/>'
    other = '<testcase classname="tests.test_b" name="test_b"/>'
    _junit(shards / "azpytest-api-0-1" / "junit.xml", failed + other)
    _junit(shards / "azpytest-api-0-2" / "junit.xml", passed + other)
    _junit(shards / "azpytest-api-1-1" / "junit.xml", other.replace("test_b", "test_c"))
    result = actions_step(
        None,
        "report",
        "--merge",
        str(tmp_path / "merged.xml"),
        str(shards / "**" / "junit.xml"),
        env={"AZPYTEST_FAIL_ON_TEST_FAILURE": "true"},
    )
    assert result.returncode == 0, result.stdout
    assert (result.outputs["total"], result.outputs["failed"]) == ("3", "0")
    assert result.commands("notice") == [
        "Re-run jobs: the results of the latest attempt of each shard are merged, the earlier "
        "attempts' left out: azpytest-api-0 (attempt 2; 1 earlier left out)."
    ]


@pytest.mark.parametrize("allowed", [False, True])
def test_a_merge_of_empty_shards_only_is_no_test_at_all(
    tmp_path: Path, actions_step: Step, allowed: bool
) -> None:
    from azpytest.report.junit import EMPTY_SHARD, write_empty

    files = []
    for index in range(2):
        path = tmp_path / f"azpytest-x-{index}-1" / "junit.xml"
        path.parent.mkdir()
        write_empty(path, EMPTY_SHARD, f"{index + 1}/2")
        files.append(str(path))
    result = actions_step(
        None,
        "report",
        *files,
        "--merge",
        str(tmp_path / "merged.xml"),
        env={
            "AZPYTEST_FAIL_ON_TEST_FAILURE": "true",
            "AZPYTEST_ALLOW_NO_TESTS": "true" if allowed else "false",
        },
    )
    if allowed:
        assert result.returncode == 0
        assert result.commands("error") == []
    else:
        assert result.returncode == 1
        assert result.commands("error") == [
            "No test ran: the 2 JUnit files hold no test case. A filter that matches nothing "
            "would pass as green; fix the tests/markers inputs, or set allow-no-tests: true if "
            "an empty run is expected."
        ]
