"""The merge job installs nothing (issue 17, part 2): the action's Report step, in merge mode,
runs azpytest's report with the runner's Python and no site-packages (`python -S`), so only
the standard library can load. The step's own shell text (from action.yml) runs here, with a
Python whose site-packages do hold the Azure SDKs, and must merge, judge and summarise
without importing any of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
THIRD_PARTY = (
    "azure",
    "msal",
    "requests",
    "urllib3",
    "yaml",
    "ahocorasick",
    "pytest",
    "kubernetes",
)


def report_step() -> str:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    [step] = [s for s in action["runs"]["steps"] if s.get("id") == "report"]
    return str(step["run"])


def shard(path: Path, failed: bool) -> None:
    outcome = '<failure message="assert 1 == 2">assert 1 == 2</failure>' if failed else ""
    path.parent.mkdir(parents=True)
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="2" '
        f'failures="{int(failed)}" errors="0" skipped="0" time="1.5">'
        f'<testcase classname="tests.test_a" name="test_one" file="tests/test_a.py" line="3" '
        f'time="0.5">{outcome}</testcase>'
        '<testcase classname="tests.test_a" name="test_two" file="tests/test_a.py" line="9" '
        'time="1.0"/></testsuite></testsuites>'
    )


def test_the_merge_step_runs_on_the_standard_library_alone(tmp_path: Path) -> None:
    temp = tmp_path / "runner-temp"
    shard(temp / "shards" / "s-0-1" / "junit.xml", failed=True)
    shard(temp / "shards" / "s-1-1" / "junit.xml", failed=False)
    python3 = tmp_path / "bin" / "python3"  # the runner's python3: one with the SDKs installed
    python3.parent.mkdir()
    python3.write_text(f'#!/bin/sh\nexec {sys.executable} -X importtime "$@"\n')
    python3.chmod(0o755)
    files = {name: tmp_path / name.lower() for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
    env = {
        "PATH": f"{python3.parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "GITHUB_ACTIONS": "true",
        "GITHUB_ACTION_PATH": str(ROOT),
        "RUNNER_TEMP": str(temp),
        "AZPYTEST_MERGE": f"{temp}/shards/**/junit.xml",
        "AZPYTEST_PYTHON_VERSION": "",
        "AZPYTEST_FAIL_ON_TEST_FAILURE": "true",
        "AZPYTEST_ALLOW_ALL_SKIPPED": "false",
        "AZPYTEST_ALLOW_NO_TESTS": "false",
        **{name: str(path) for name, path in files.items()},
    }
    done = subprocess.run(
        ["bash", "-e", "-c", report_step()],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # a test failed
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert any(m.startswith("azpytest.report") for m in imported), sorted(imported)
    assert sorted(m for m in imported if m.split(".")[0] in THIRD_PARTY) == []
    summary = files["GITHUB_STEP_SUMMARY"].read_text()
    assert summary.startswith("### ❌ 1 failed, 3 passed in "), summary
    outputs = files["GITHUB_OUTPUT"].read_text()
    assert "failed-tests<<" in outputs or "failed-tests=" in outputs
    assert "tests/test_a.py::test_one" in outputs
    # The shard annotated its failure; the merge does not again.
    assert "::error" not in done.stdout
    assert os.path.isfile(temp / "azpytest-merged-junit.xml")
