"""The dbt-only job (prepare, `azpytest exec -- dbt build`, cleanup `if: always()`), run by
act: dbt builds from the profile prepare wrote, and no profile is left behind, whether
dbt build passed or failed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actrun import ActRun, assert_no_secret

from azpytest.rundir import RunDir
from azpytest.steps.cleanup import credential_files

Act = Callable[..., ActRun]
World = Callable[..., dict[str, Any]]

RUN_DIR = ("azpytest", "1-1-dbt")  # $RUNNER_TEMP/azpytest/<run id>-<attempt>-<job>


def _left_behind(run: ActRun) -> list[str]:
    run_dir = (run.out / "runner-temp").joinpath(*RUN_DIR)
    assert credential_files(RunDir(run_dir)) == []
    return sorted(p.name for p in run_dir.iterdir())


def test_dbt_only_job_builds_and_leaves_no_profile(act: Act, shop_world: World) -> None:
    run = act("dbt-build.yml", shop_world())

    assert run.returncode == 0, run.explain()
    assert run.jobs() == {"dbt": "success"}
    log = run.lines("dbt")
    written = [line for line in log if "azpytest: dbt: profile azpytest_demo" in line]
    assert len(written) == 1, log
    assert written[0].endswith("/dbt/dbt_project.yml"), written
    assert any("Completed successfully" in line for line in log), run.explain()
    assert ("success", "Main dbt build") in run.steps("dbt"), run.steps("dbt")
    assert ("success", "Main Clean up credentials") in run.steps("dbt"), run.steps("dbt")
    left = _left_behind(run)
    assert "profiles.yml" not in left and "connections.yaml" not in left, left
    assert "prepared.json" in left
    assert_no_secret(run, run.out)


def test_dbt_only_job_that_fails_still_leaves_no_profile(act: Act, shop_world: World) -> None:
    run = act("dbt-build-failing.yml", shop_world())

    assert run.returncode != 0
    assert run.jobs() == {"dbt": "failure"}, run.explain()
    steps = run.steps("dbt")
    assert ("failure", "Main dbt build") in steps, steps
    assert ("success", "Main Clean up credentials") in steps, steps
    assert any("no_such_table_anywhere" in line for line in run.lines("dbt"))
    left = _left_behind(run)
    assert "profiles.yml" not in left and "connections.yaml" not in left, left
    assert_no_secret(run, run.out)
