"""The dbt fixture: dbt runs against the profile `azpytest prepare` wrote."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from azpytest import errors
from azpytest.plugin.artifacts import ArtifactCollector
from azpytest.plugin.common import setting, skip_or_fail

if TYPE_CHECKING:
    from azpytest.dbt import DbtResult


class DbtRunner:
    """`dbt("build")`, `dbt.build("--select", "orders")`: dbt against the prepared profile.
    A failure fails the test with dbt's own error lines (`check=False` returns it instead).
    Each invocation's run_results.json is read when it ends and kept, under a name of its own
    (`dbt-01-build-run_results.json`, `dbt-02-run-run_results.json`, ...), as a failure
    artifact (scrubbed of every masked value, like every artifact), with dbt's log."""

    def __init__(
        self, project: Path, profiles: Path, output: Path, collector: ArtifactCollector
    ) -> None:
        self.project, self.profiles, self.output = project, profiles, output
        self._collector = collector
        self._count = 0

    def __call__(self, *args: str, check: bool = True, target: str | None = None) -> DbtResult:
        from azpytest.dbt import RUN_RESULTS, ProfileVariableMissing, run_dbt

        try:
            result = run_dbt(
                list(args),
                project_dir=self.project,
                profiles_dir=self.profiles,
                target=target,
                output_dir=self.output,
            )
        except ProfileVariableMissing as exc:
            pytest.fail(str(exc), pytrace=False)
        self._count += 1
        command = next((a for a in args if not a.startswith("-")), "dbt")
        results = self.output / RUN_RESULTS
        if results.is_file():  # the next invocation overwrites it: keep these bytes now
            self._collector.collect(
                f"dbt-{self._count:02d}-{command}-{RUN_RESULTS}", results.read_bytes()
            )
        if self._count == 1:  # dbt appends every invocation to one log, read at the end
            self._collector.collect("dbt.log", path=result.log_path)
        if check and not result.ok:
            detail = "\n".join(result.error_lines) or result.stdout[-2000:]
            pytest.fail(errors.dbt_failed(args, result.returncode, detail), pytrace=False)
        return result

    def build(self, *args: str, check: bool = True, target: str | None = None) -> DbtResult:
        return self("build", *args, check=check, target=target)

    def run(self, *args: str, check: bool = True, target: str | None = None) -> DbtResult:
        return self("run", *args, check=check, target=target)

    def test(self, *args: str, check: bool = True, target: str | None = None) -> DbtResult:
        return self("test", *args, check=check, target=target)

    def seed(self, *args: str, check: bool = True, target: str | None = None) -> DbtResult:
        return self("seed", *args, check=check, target=target)


@pytest.fixture
def dbt(
    request: pytest.FixtureRequest, artifact_collector: ArtifactCollector, tmp_path: Path
) -> DbtRunner:
    project = request.config.getini("azpytest_dbt_project") or setting("dbt-project")
    if not project:
        skip_or_fail(errors.NO_DBT_PROJECT)
    profiles = os.environ.get("DBT_PROFILES_DIR")
    if not profiles:
        skip_or_fail(errors.NO_DBT_PROFILE)
    folder = Path(str(request.config.rootpath)) / str(project)
    return DbtRunner(folder, Path(profiles), tmp_path / "dbt-target", artifact_collector)
