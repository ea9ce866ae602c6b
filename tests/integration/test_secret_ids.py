"""Ids the suite writes itself (`ids=`, `pytest.param(id=...)`, an ids function) that hold a
masked value become `secret-<hash>` before pytest names the tests (issue 13, item 3)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from azpytest.rundir import RunDir

SECRET = "warehouse-Wörd-7f3a.internal"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("AZPYTEST_", "AZURE_", "ACTIONS_ID_TOKEN", "GITHUB_")) or name == "CI":
            monkeypatch.delenv(name)
    return monkeypatch


def prepared(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "run")
    run_dir.write_prepared({"secrets": [], "masked_env": ["DB_HOST"]})
    env.setenv("AZPYTEST_RUN_DIR", str(run_dir.path))
    env.setenv("DB_HOST", SECRET)


SUITE = """
    import os
    import pytest

    HOST = os.environ["DB_HOST"]

    @pytest.mark.parametrize("host", [HOST, "localhost"], ids=[f"on-{HOST}", "local"])
    def test_explicit(host):
        assert host == "localhost"

    @pytest.mark.parametrize(
        "host", [pytest.param(1, id=HOST[:12]), pytest.param(2, id="plain")]
    )
    def test_param_id(host):
        assert host == 2

    @pytest.mark.parametrize("port", [5432], ids=lambda port: f"{HOST}:{port}")
    def test_ids_function(port):
        assert port == 0
"""


def test_explicit_ids_holding_a_masked_value_are_replaced_everywhere(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prepared(clean_env, tmp_path)
    pytester.makepyfile(test_ids=SUITE)
    junit = tmp_path / "junit.xml"
    durations = tmp_path / "durations.json"
    result = pytester.runpytest_subprocess(
        "-v", f"--junitxml={junit}", "--store-durations", f"--durations-path={durations}"
    )
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines(
        [
            "test_ids.py::test_explicit[[]secret-????????[]] FAILED*",
            "test_ids.py::test_explicit[[]local[]] PASSED*",
            "test_ids.py::test_param_id[[]secret-????????[]] FAILED*",
            "test_ids.py::test_param_id[[]plain[]] PASSED*",
            "test_ids.py::test_ids_function[[]secret-????????[]] FAILED*",
        ],
        consecutive=False,
    )
    cache = pytester.path / ".pytest_cache"
    written = "".join(
        [
            result.stdout.str(),
            result.stderr.str(),
            junit.read_text(),
            durations.read_text(),
            *(p.read_text() for p in cache.rglob("*") if p.is_file()),
        ]
    )
    # No fragment of 8 characters, in the forms a node id or JUnit writes it.
    for form in (SECRET, SECRET.replace("ö", "\\xf6")):
        stretches = {form[i : i + 8] for i in range(len(form) - 7)}
        assert [s for s in stretches if s in written] == []
    # A failed test is selected again by the node id the run showed (a rerun).
    failed = re.search(r"test_ids\.py::test_explicit\[secret-\w{8}\]", result.stdout.str())
    assert failed is not None
    again = pytester.runpytest_subprocess(failed.group(0))
    again.assert_outcomes(failed=1)
