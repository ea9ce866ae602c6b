"""`azpytest run` as a workflow step: pytest with JUnit, shards, reruns, failure artifacts."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Step = Callable[..., Any]
IDENTITY = {
    "AZPYTEST_TENANT_ID": "8d2a1c3e-5f47-4b6a-9c1d-2e3f4a5b6c7d",
    "AZPYTEST_CLIENT_ID": "3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b",
}
SECRET = "pa55-Wörd-that-must-never-show"


def suite(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    for name, text in files.items():
        (root / "tests" / name).write_text(textwrap.dedent(text))
    return root


def junit_cases(path: Path) -> list[tuple[str, str]]:
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = tag
        cases.append((f"{case.get('classname')}::{case.get('name')}", outcome))
    return cases


def run_dir(result: Any) -> Path:
    return Path(result.runner_temp, "azpytest", "12345678901-1-test")


def test_exit_code_junit_and_live_output(tmp_path: Path, actions_step: Step) -> None:
    root = suite(
        tmp_path,
        {
            "test_a.py": """
        def test_ok():
            assert True

        def test_bad():
            assert 1 + 1 == 3
    """
        },
    )
    result = actions_step(None, "run", env={**IDENTITY, "AZPYTEST_WORKING_DIRECTORY": str(root)})
    assert result.returncode == 1
    junit = run_dir(result) / "junit.xml"
    assert sorted(junit_cases(junit)) == [
        ("tests.test_a::test_bad", "failure"),
        ("tests.test_a::test_ok", "passed"),
    ]
    assert "tests/test_a.py .F" in result.stdout  # pytest's own progress, streamed through
    assert result.outputs["junit-path"] == str(junit)
    assert result.stdout.splitlines()[0] == "::group::azpytest run: command"


def test_no_tests_collected_is_an_error_unless_allowed(tmp_path: Path, actions_step: Step) -> None:
    root = suite(tmp_path, {"test_a.py": "def test_ok():\n    pass\n"})
    env = {
        **IDENTITY,
        "AZPYTEST_WORKING_DIRECTORY": str(root),
        "AZPYTEST_MARKERS": "nothing_has_this",
    }
    result = actions_step(None, "run", env=env)
    assert result.returncode == 5
    assert result.commands("error") == [
        "pytest collected no tests for (the default selection) with -m 'nothing_has_this'. A filter "
        "that matches nothing would pass as green; fix the tests/markers inputs, or set "
        "allow-no-tests: true if an empty run is expected."
    ]
    allowed = actions_step(None, "run", env={**env, "AZPYTEST_ALLOW_NO_TESTS": "true"})
    assert allowed.returncode == 0


def uneven_suite(tmp_path: Path) -> tuple[Path, dict[str, float]]:
    files = {}
    durations: dict[str, float] = {}
    for module in range(4):
        body = []
        for n in range(10):
            body.append(f"def test_{n}():\n    pass\n")
            durations[f"tests/test_m{module}.py::test_{n}"] = float((module + 1) * (n + 1) ** 1.5)
        files[f"test_m{module}.py"] = "\n".join(body)
    return suite(tmp_path, files), durations


def test_four_shards_cover_the_suite_once_and_balance_by_durations(
    tmp_path: Path, actions_step: Step
) -> None:
    root, durations = uneven_suite(tmp_path)
    durations_file = tmp_path / "durations.json"
    durations_file.write_text(json.dumps(durations))
    shards = []
    for index in range(4):
        result = actions_step(
            None,
            "run",
            env={
                **IDENTITY,
                "AZPYTEST_WORKING_DIRECTORY": str(root),
                "AZPYTEST_SHARD_COUNT": "4",
                "AZPYTEST_SHARD_INDEX": str(index),
                "AZPYTEST_DURATIONS_PATH": str(durations_file),
            },
        )
        assert result.returncode == 0, result.stdout
        ran = [name for name, _ in junit_cases(run_dir(result) / "junit.xml")]
        shards.append(ran)
        # Each shard leaves the durations it measured, for the next run.
        measured = json.loads((run_dir(result) / f"durations-{index}.json").read_text())
        assert len(measured) >= len(ran)
    everything = [name for shard in shards for name in shard]
    assert len(everything) == len(set(everything)) == 40
    totals = [
        sum(durations[n.replace("tests.", "tests/").replace("::", ".py::", 1)] for n in shard)
        for shard in shards
    ]
    assert max(totals) <= min(totals) * 1.15, totals


def test_shards_without_durations_split_evenly_by_count(tmp_path: Path, actions_step: Step) -> None:
    root, _ = uneven_suite(tmp_path)
    counts = []
    for index in range(4):
        result = actions_step(
            None,
            "run",
            env={
                **IDENTITY,
                "AZPYTEST_WORKING_DIRECTORY": str(root),
                "AZPYTEST_SHARD_COUNT": "4",
                "AZPYTEST_SHARD_INDEX": str(index),
            },
        )
        counts.append(len(junit_cases(run_dir(result) / "junit.xml")))
    assert counts == [10, 10, 10, 10]


def test_rerun_collects_exactly_the_failures(tmp_path: Path, actions_step: Step) -> None:
    lines = [f"def test_{n}():\n    assert {n} not in (7, 23, 41)\n" for n in range(50)]
    root = suite(tmp_path, {"test_many.py": "\n".join(lines)})
    first = actions_step(None, "run", env={**IDENTITY, "AZPYTEST_WORKING_DIRECTORY": str(root)})
    assert first.returncode == 1
    junit = run_dir(first) / "junit.xml"
    saved = tmp_path / "earlier-junit.xml"
    saved.write_bytes(junit.read_bytes())
    rerun = actions_step(
        None,
        "run",
        env={
            **IDENTITY,
            "AZPYTEST_WORKING_DIRECTORY": str(root),
            "AZPYTEST_RERUN_FAILED_FROM": str(saved),
        },
    )
    assert "azpytest: rerunning the 3 failed test(s) of" in rerun.stdout
    assert sorted(junit_cases(run_dir(rerun) / "junit.xml")) == [
        ("tests.test_many::test_23", "failure"),
        ("tests.test_many::test_41", "failure"),
        ("tests.test_many::test_7", "failure"),
    ]


def test_failing_test_that_prints_a_secret_leaves_no_trace(
    tmp_path: Path, actions_step: Step
) -> None:
    root = suite(
        tmp_path,
        {
            "test_leak.py": """
        import logging, os

        def test_leaks(artifact_collector, tmp_path):
            secret = os.environ["DB_PASSWORD"]
            print("connecting with", secret)
            logging.getLogger("app").warning("password is %s", secret)
            (tmp_path / "dump.txt").write_text("dsn=postgres://app:" + secret + "@db/x")
            artifact_collector.collect("response.json", '{"password": "' + secret + '"}')
            artifact_collector.collect("dump.txt", path=tmp_path / "dump.txt")
            # Mapping-style, as suites' own collectors are used: the last value of a name.
            artifact_collector["pods.log"] = "first"
            artifact_collector["pods.log"] = "pod db-0: login as app/" + secret
            artifact_collector["status.txt"] = {"phase": "Failed"}
            assert set(artifact_collector) >= {"response.json", "pods.log", "status.txt"}
            assert secret == "something else"
    """
        },
    )
    prepared = tmp_path / "prepared-run"
    prepared.mkdir()
    (prepared / "prepared.json").write_text(
        json.dumps({"masked_env": ["DB_PASSWORD"], "secrets": []})
    )
    result = actions_step(
        None,
        "run",
        env={
            **IDENTITY,
            "AZPYTEST_WORKING_DIRECTORY": str(root),
            "DB_PASSWORD": SECRET,
            "AZPYTEST_RUN_DIR": str(prepared),
        },
    )
    assert result.returncode == 1
    junit = prepared / "junit.xml"
    artifacts = prepared / "artifacts" / "tests" / "test_leak.py" / "test_leaks"
    files = sorted(p.name for p in artifacts.iterdir())
    assert files == [
        "call-traceback.txt",
        "dump.txt",
        "log-call.txt",
        "pods.log",
        "response.json",
        "status.txt",
        "stdout-call.txt",
    ]
    assert (artifacts / "pods.log").read_text() == "pod db-0: login as app/***"
    assert (artifacts / "status.txt").read_text() == "{'phase': 'Failed'}"
    assert (artifacts / "response.json").read_text() == '{"password": "***"}'
    assert (artifacts / "dump.txt").read_text() == "dsn=postgres://app:***@db/x"
    assert "connecting with ***" in (artifacts / "stdout-call.txt").read_text()
    everything = (
        junit.read_text()
        + result.stdout
        + result.stderr
        + "".join(p.read_text() for p in artifacts.iterdir())
    )
    assert SECRET not in everything
    assert "***" in junit.read_text()


@pytest.mark.parametrize(
    ("nodeid", "expected"),
    [
        ("tests/test_a.py::test_x[a/b]", "tests/test_a.py/test_x[a_b]"),
        (
            "tests/test_a.py::TestC::test_y[../../etc/passwd]",
            "tests/test_a.py/TestC/test_y[.._.._etc_passwd]",
        ),
        ("/abs/test.py::t", "_/abs/test.py/t"),
        ("tests/t.py::test[ünï cödé::x]", "tests/t.py/test[ünï_cödé/x]"),
    ],
)
def test_node_paths_are_safe(nodeid: str, expected: str) -> None:
    from azpytest.artifacts import node_path

    path = node_path(nodeid)
    assert str(path) == expected
    assert not path.is_absolute() and ".." not in path.parts


def test_node_paths_are_length_limited() -> None:
    from azpytest.artifacts import node_path

    path = node_path("tests/t.py::test[" + "x" * 500 + "]")
    assert len(str(path)) <= 200
    assert all(len(part) <= 80 for part in path.parts)
