"""The action in one job (`uses: org/azpytest@v1`), run by act: a green run and a failing one,
judged by act's output, the job summary, the step outputs and the uploaded files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from actrun import API_KEY, CLIENT, PG_PASSWORD, ActRun, assert_no_secret, junit_cases

from azpytest.rundir import RunDir
from azpytest.steps.cleanup import credential_files

Act = Callable[..., ActRun]
World = Callable[..., dict[str, Any]]

RUN_DIR = ("azpytest", "1-1-integration")  # $RUNNER_TEMP/azpytest/<run id>-<attempt>-<job>
AKS_SERVER_APP = "6dae42f8-4368-4678-94ff-3960e28e3630"  # the AKS Entra server app's id
SHOP_SECRETS = sorted(["api-key", "pg-host", "pg-port", "pg-database", "pg-user", "pg-password"])
GREEN = {
    "tests/test_cluster.py::test_configmap_round_trip": "passed",
    "tests/test_orders.py::test_orders_total": "passed",
    "tests/test_orders.py::test_largest_order": "passed",
    "tests/test_orders.py::test_order_exists[1]": "passed",
    "tests/test_orders.py::test_order_exists[2]": "passed",
    "tests/test_settings.py::test_api_key_from_key_vault": "passed",
    "tests/test_settings.py::test_api_key_in_the_environment": "passed",
}


def test_green_run(act: Act, shop_world: World) -> None:
    run = act("azure-tests.yml", shop_world())

    assert run.returncode == 0, run.explain()
    assert run.jobs() == {"integration": "success"}
    assert "azpytest ran 7 tests, 0 failed" in run.lines("integration")

    # The outputs a later step reads.
    outputs = run.outputs()
    runner_temp = run.out / "runner-temp"
    run_dir = runner_temp.joinpath(*RUN_DIR)
    junit = run_dir / "junit.xml"
    job_temp = outputs["junit-path"].removesuffix("/" + "/".join((*RUN_DIR, "junit.xml")))
    assert outputs == {
        "total": "7",
        "passed": "7",
        "failed": "0",
        "errors": "0",
        "skipped": "0",
        "failed-tests": "",
        "junit-path": f"{job_temp}/azpytest/1-1-integration/junit.xml",
        "artifacts-path": "",
        "kubeconfig-path": f"{job_temp}/azpytest/1-1-integration/kubeconfig",
    }
    assert junit_cases(junit) == GREEN

    # The summary: the verdict and the table.
    summary = run.summary("integration")
    assert summary.startswith("### ✅ 7 passed in "), summary
    pytest.LineMatcher(summary.splitlines()).fnmatch_lines(
        [
            "| Passed | Failed | Errors | Skipped | xfailed | Total | Duration |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            "| 7 | 0 | 0 | 0 | 0 | 7 | * s |",
        ],
        consecutive=True,
    )
    assert run.annotations("error") == []

    # Each Key Vault value was masked (act's JSON log shows the registration) before any
    # test ran; the values reached the tests (they passed), never the log.
    masked_at = {
        r.get("arg"): n for n, r in enumerate(run.records) if r.get("command") == "add-mask"
    }
    tests_started = next(
        n for n, r in enumerate(run.records) if r.get("msg") == "⭐ Run Main Run the tests"
    )
    for value in (API_KEY, PG_PASSWORD):
        assert masked_at[value] < tests_started
    # The tests used the stand-ins for real: Key Vault read with a token, the AKS API server
    # with an Entra token from the kubeconfig's exec plugin (azpytest kube-token).
    sandbox = run.sandbox
    assert {e.who for e in sandbox.log.select(service="keyvault") if e.status == 200} == {CLIENT}
    kube = [e for e in sandbox.log.select(service="kube") if e.method == "POST"]
    assert kube and {e.who for e in kube} == {CLIENT}, sandbox.log.select(service="kube")

    # No credential file left behind; what the report and upload need is kept.
    assert credential_files(RunDir(run_dir)) == []
    assert sorted(RunDir(run_dir).recorded()) == [
        "bin",
        "connections.yaml",
        "kubeconfig",
        "tokens.json",  # the tokens run masked, for the report step's scrubber
    ]
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".azpytest-credentials",  # the names cleanup deleted (never a value)
        ".azpytest-run",  # the marker: azpytest made this folder
        "audit.jsonl",
        "durations-0.json",
        "junit.xml",
        "prepared.json",
    ]
    audit = [json.loads(line) for line in (run_dir / "audit.jsonl").read_text().splitlines()]
    brokered = [a for a in audit if a.get("source") == "broker"]
    assert sorted((a["vault"], a["secret"], a["outcome"]) for a in audit if a not in brokered) == [
        ("kv-shop", name, "read") for name in SHOP_SECRETS
    ]
    # kubectl's tokens came from the job's broker (kube-token's fast path), for AKS alone.
    assert brokered and {a["resource"] for a in brokered} == {AKS_SERVER_APP}

    # upload: failure (the default) uploads nothing for a green run.
    assert run.uploaded() == {}

    assert_no_secret(run, run.out)


def _line_of(run: ActRun, path: str, text: str) -> int:
    lines = (run.repo / path).read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def test_failing_test(act: Act, shop_world: World) -> None:
    run = act("azure-tests-failing.yml", shop_world())

    assert run.returncode != 0
    assert run.jobs() == {"integration": "failure"}, run.explain()
    log = run.lines("integration")
    assert "azpytest ran 2 tests, 1 failed" in log
    # The job fails at the report step, after the summary; cleanup still runs.
    results = [line.strip() for line in log if line.strip().startswith(("✅", "❌"))]
    pytest.LineMatcher(results).fnmatch_lines(
        [
            "✅  Success - Main Run the tests *",
            "❌  Failure - Main Report *",
            "✅  Success - Main Upload test results *",
            "✅  Success - Main Clean up credentials *",
            "❌  Failure - Main Integration tests *",
        ]
    )

    # The annotation at the failing assertion, its message masked.
    line = _line_of(run, "tests/test_refunds.py", "assert total == 30")
    assert run.annotations("error") == [
        f"::error file=tests/test_refunds.py,line={line},"
        "title=tests/test_refunds.py%3A%3Atest_refund_total::"
        "AssertionError: refund total 20 != 30 (api key ***)%0Aassert 20 == 30"
    ]
    summary = run.summary("integration")
    assert summary.startswith("### ❌ 1 failed, 1 passed in "), summary
    pytest.LineMatcher(summary.splitlines()).fnmatch_lines(
        [
            "| `tests/test_refunds.py::test_refund_total` | `tests/test_refunds.py:"
            f"{line}` | AssertionError: refund total 20 != 30 (api key ***) | * s |"
        ]
    )

    outputs = run.outputs()
    job_temp = outputs["junit-path"].removesuffix("/" + "/".join((*RUN_DIR, "junit.xml")))
    assert {k: v for k, v in outputs.items() if k != "kubeconfig-path"} == {
        "total": "2",
        "passed": "1",
        "failed": "1",
        "errors": "0",
        "skipped": "0",
        "failed-tests": "tests/test_refunds.py::test_refund_total",
        "junit-path": f"{job_temp}/azpytest/1-1-integration/junit.xml",
        "artifacts-path": f"{job_temp}/azpytest/1-1-integration/artifacts",
    }

    # upload: failure uploads the JUnit file, the failure artifacts and the audit log, under
    # a name unique to the job, shard and attempt.
    [(name, artifact)] = run.uploaded().items()
    assert name == "azpytest-integration-0-1"
    files = sorted(str(p.relative_to(artifact)) for p in artifact.rglob("*") if p.is_file())
    collected = "artifacts/tests/test_refunds.py/test_refund_total"
    assert files == [
        f"{collected}/call-traceback.txt",
        f"{collected}/refund-request.json",
        f"{collected}/stdout-call.txt",
        "audit.jsonl",
        "durations-0.json",
        "junit.xml",
    ]
    assert junit_cases(artifact / "junit.xml") == {
        "tests/test_refunds.py::test_refund_allowed": "passed",
        "tests/test_refunds.py::test_refund_total": "failure",
    }
    # Scrubbed: what the test printed, collected and failed with reads *** for the value.
    assert (artifact / collected / "refund-request.json").read_text() == (
        '{"api_key": "***", "amount": 30}'
    )
    assert (
        "refund service called with ***" in (artifact / collected / "stdout-call.txt").read_text()
    )
    assert "(api key ***)" in (artifact / "junit.xml").read_text()

    run_dir = run.out.joinpath("runner-temp", *RUN_DIR)
    assert credential_files(RunDir(run_dir)) == []
    assert_no_secret(run, run.out, run.store)


def test_two_steps_in_one_job_upload_under_two_names(act: Act, shop_world: World) -> None:
    run = act("two-steps.yml", shop_world())

    assert run.returncode == 0, run.explain()
    assert "(409) Conflict" not in run.output
    # The first step keeps the documented default name; the second adds .2 to the job id.
    uploaded = run.uploaded()
    assert sorted(uploaded) == ["azpytest-integration-0-1", "azpytest-integration.2-0-1"]
    assert junit_cases(uploaded["azpytest-integration-0-1"] / "junit.xml") == {
        node: outcome for node, outcome in GREEN.items() if "test_settings" in node
    }
    assert junit_cases(uploaded["azpytest-integration.2-0-1"] / "junit.xml") == {
        node: outcome for node, outcome in GREEN.items() if "test_orders" in node
    }
    assert_no_secret(run, run.store)


def test_tests_import_what_an_earlier_step_installed(act: Act, shop_world: World) -> None:
    """No `requirements` input: the job pip-installs requirements-test.txt (psycopg and
    kubernetes, which azpytest does not ship) into its own Python first."""
    run = act("azure-tests-pip.yml", shop_world())

    assert run.returncode == 0, run.explain()
    assert run.jobs() == {"integration": "success"}
    assert "azpytest ran 7 tests, 0 failed" in run.lines("integration")
    run_dir = (run.out / "runner-temp").joinpath(*RUN_DIR)
    assert junit_cases(run_dir / "junit.xml") == GREEN
    assert "ModuleNotFoundError" not in run.output
    assert_no_secret(run, run.out)


def test_a_suite_in_a_subfolder_points_from_the_repository_root_and_reruns(
    act: Act, shop_world: World
) -> None:
    run = act("azure-tests-subfolder.yml", shop_world())

    assert run.jobs() == {"integration": "success"}, run.explain()  # both steps continue-on-error
    first = run.outputs()
    assert sorted(first["failed-tests"].split()) == [
        "tests/test_broken.py",
        "tests/test_refunds.py::test_refund_total",
    ]
    # Annotations name the files from the repository root (they land on a pull request's
    # diff), at the failing line and, for the module that fails to import, its import.
    refunds = "services/shop/tests/test_refunds.py"
    line = _line_of(run, "tests/test_refunds.py", "assert total == 30")  # before the move
    errors = run.annotations("error")
    assert any(
        e.startswith(
            f"::error file={refunds},line={line},"
            "title=tests/test_refunds.py%3A%3Atest_refund_total::"  # the runner unescapes it
        )
        for e in errors
    ), errors
    broken = [
        e
        for e in errors
        if e.startswith("::error file=services/shop/tests/test_broken.py,line=1,title=")
    ]
    assert broken and "`not_installed_anywhere` is not installed where pytest ran" in broken[0]

    # The second step reran exactly those two from the first one's JUnit (no "not found", no
    # pytest exit 4), in a run folder of its own.
    log = "\n".join(run.lines("integration"))
    assert "azpytest: rerunning the 2 failed test(s) of " in log
    assert "file or directory not found" not in log
    rerun = json.loads((run.out / "rerun-outputs.json").read_text())
    assert sorted(rerun["failed-tests"].split()) == sorted(first["failed-tests"].split())
    assert rerun["junit-path"].endswith("/azpytest/1-1-integration.2/junit.xml")
    assert first["junit-path"].endswith("/azpytest/1-1-integration/junit.xml")
    assert sorted(run.uploaded()) == ["azpytest-integration-0-1", "azpytest-integration.2-0-1"]
    assert_no_secret(run, run.out)


def test_a_fresh_runner_restores_the_environment_from_the_actions_cache(
    act: Act, shop_world: World, tmp_path: Path
) -> None:
    """Issue 17, part 1: the first job builds azpytest's environment and saves it under its
    key; a job on a fresh runner (an empty tool cache, as every hosted runner starts)
    restores it and uses it as it is: no uv, no install."""
    home = tmp_path / "runner"  # a runner of this test's own: its tool cache
    first = act("azure-tests.yml", shop_world(), home=home)
    assert first.returncode == 0, first.explain()
    lines = first.lines("integration")
    [key] = [line.split()[-1] for line in lines if "azpytest: environment cache key " in line]
    assert any(line.endswith(f"Cache not found for input keys: {key}") for line in lines)
    assert any(line.endswith(f"Cache saved with key: {key}") for line in lines)
    built = next(line for line in lines if "azpytest: environment ready in " in line)
    assert f"/tool_cache/azpytest-env/{key}; uv " in built

    shutil.rmtree(home / "tool_cache")  # the next job's runner starts empty
    second = act("azure-tests.yml", shop_world(), home=home)
    assert second.returncode == 0, second.explain()
    lines = second.lines("integration")
    assert any(line.endswith(f"Cache restored from key: {key}") for line in lines)
    ready = next(line for line in lines if "azpytest: environment ready in " in line)
    assert ready.endswith(f"; as it was: {key})"), ready
    assert not (home / "tool_cache" / "azpytest-uv").exists()  # uv was not needed
    assert not [line for line in lines if "Cache saved with key" in line]  # a hit saves nothing
    assert "azpytest ran 7 tests, 0 failed" in lines
