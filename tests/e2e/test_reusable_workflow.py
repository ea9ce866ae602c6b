"""The reusable workflow (`org/azpytest/.github/workflows/pytest-azure.yml@v1`), run by act:
3 shards through workflow_call with one merged report, and a rerun by hand (workflow_dispatch)
of only the failures of an earlier run, whose JUnit files come through download-artifact."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from actrun import ActRun, assert_no_secret, junit_cases

Act = Callable[..., ActRun]
World = Callable[..., dict[str, Any]]

SUITE = {
    "tests/test_cluster.py::test_configmap_round_trip": "passed",
    "tests/test_orders.py::test_orders_total": "passed",
    "tests/test_orders.py::test_largest_order": "passed",
    "tests/test_orders.py::test_order_exists[1]": "passed",
    "tests/test_orders.py::test_order_exists[2]": "passed",
    "tests/test_refunds.py::test_refund_allowed": "passed",
    "tests/test_refunds.py::test_refund_total": "failure",
    "tests/test_settings.py::test_api_key_from_key_vault": "passed",
    "tests/test_settings.py::test_api_key_in_the_environment": "passed",
}


def test_three_shards_through_workflow_call(act: Act, shop_world: World) -> None:
    run = act("azure-tests-sharded.yml", shop_world())

    # act runs the plan job, the matrix the plan computed (fromJSON of its output), and the
    # merge job after every shard; the run fails, as one test fails.
    assert run.returncode != 0
    jobs = run.jobs()
    assert sorted(jobs) == ["merge", "plan", "test (shard=0)", "test (shard=1)", "test (shard=2)"]
    assert jobs["plan"] == "success", run.explain()
    assert jobs["merge"] == "failure"
    # act differs: a job that needs a failed reusable workflow never runs, `if: always()` or
    # not (GitHub runs the probe job); so this run's outputs are read from merge's records.

    # Every test ran exactly once, in one of the shards; the shards split the suite evenly.
    # The call named itself (no suite given): azpytest-<8 hex digits>-<shard>-<attempt>.
    name = run.step_outputs("plan", "plan")["artifact-name"]
    assert re.fullmatch(r"azpytest-[0-9a-f]{8}", name), name
    uploaded = run.uploaded()
    assert sorted(uploaded) == [f"{name}-0-1", f"{name}-1-1", f"{name}-2-1"]
    shards = [junit_cases(uploaded[f"{name}-{i}-1"] / "junit.xml") for i in range(3)]
    assert [len(shard) for shard in shards] == [3, 3, 3]
    ran: dict[str, str] = {}
    for shard in shards:
        assert not set(shard) & set(ran), "a test ran in two shards"
        ran.update(shard)
    assert ran == SUITE
    # The shard holding the failure failed at its report step; the others passed. (act
    # differs: it reports every shard that ends after a failed one as failed, so the steps
    # tell, not the job results.)
    for index, shard in enumerate(shards):
        failed = [
            name for result, name in run.steps(f"test (shard={index})") if result != "success"
        ]
        if "failure" in shard.values():
            assert failed == ["Main Report", "Main org/azpytest@v1"], run.steps(
                f"test (shard={index})"
            )
        else:
            assert failed == [], failed

    # One summary for the whole run, counting every shard.
    summary = run.summary("merge")
    assert summary.startswith("### ❌ 1 failed, 8 passed in "), summary
    pytest.LineMatcher(summary.splitlines()).fnmatch_lines(
        [
            "| 8 | 1 | 0 | 0 | 0 | 9 | * s |",
            "#### Shards (3 JUnit files)",
            "",
            "| JUnit file | Tests | Passed | Failed | Errors | Skipped | xfailed | Duration |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| `{name}-0-1/junit.xml` | 3 | * |",  # not the runner's paths
            f"| `{name}-1-1/junit.xml` | 3 | * |",  # not the runner's paths
            f"| `{name}-2-1/junit.xml` | 3 | * |",  # not the runner's paths
        ]
    )
    outputs = run.step_outputs("merge", "report")
    assert {k: outputs[k] for k in ("total", "passed", "failed", "errors", "skipped")} == {
        "total": "9",
        "passed": "8",
        "failed": "1",
        "errors": "0",
        "skipped": "0",
    }
    assert outputs["failed-tests"] == "tests/test_refunds.py::test_refund_total"
    # The merge job makes no credentials: it neither prepares nor cleans up.
    merge_steps = [name for _, name in run.steps("merge")]
    assert "Main Prepare credentials, secrets and connections" not in merge_steps
    assert "Main Clean up credentials" not in merge_steps
    # Nor does it install anything: the report merges on the standard library, with the
    # runner's Python and no site-packages (its SDKs are not importable: python -S).
    assert "Main Set up azpytest" not in merge_steps
    assert "Main Key azpytest's environment" not in merge_steps
    assert not [line for line in run.lines("merge") if "azpytest: environment" in line]
    assert [r for r, _ in run.steps("merge")].count("failure") == 2  # the report, the action
    assert_no_secret(run, run.out, run.store)


def _earlier_junit(cases: dict[str, str]) -> str:
    """A JUnit file as pytest writes it (xunit2) for an earlier run's shard."""
    rows = []
    for node, outcome in cases.items():
        module, name = node.split(".py::")
        body = {
            "passed": "",
            "failure": '<failure message="assert 2 == 3">assert 2 == 3</failure>',
            "error": '<error message="failed on setup with &quot;OperationalError&quot;">'
            "psycopg.OperationalError: connection timeout expired</error>",
            "skipped": '<skipped type="pytest.skip" message="later">later</skipped>',
        }[outcome]
        rows.append(
            f'<testcase classname="{module.replace("/", ".")}" name="{name}" time="0.5">'
            f"{body}</testcase>"
        )
    failures = sum(o == "failure" for o in cases.values())
    errors = sum(o == "error" for o in cases.values())
    return (
        '<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        f'<testsuite name="pytest" errors="{errors}" failures="{failures}" skipped="0" '
        f'tests="{len(cases)}" time="3.1" timestamp="2026-11-20T09:00:00" hostname="runner">'
        + "".join(rows)
        + "</testsuite></testsuites>"
    )


EARLIER_RUN = "4242"
ONE_SHARD_GREEN = {
    "plan": "success",
    "test (shard=0)": "success",
    "merge": "success",
    "probe": "success",
}
# The earlier run's shop suite (the caller sets `suite: shop`) failed one test in each of its
# two shards (a failure, a setup error).
EARLIER = {
    "azpytest-shop-0-1": {
        "tests/test_orders.py::test_orders_total": "passed",
        "tests/test_orders.py::test_largest_order": "failure",
        "tests/test_cluster.py::test_configmap_round_trip": "passed",
    },
    "azpytest-shop-1-1": {
        "tests/test_settings.py::test_api_key_from_key_vault": "passed",
        "tests/test_settings.py::test_api_key_in_the_environment": "error",
        "tests/test_orders.py::test_order_exists[1]": "passed",
    },
    # Another suite of that run, whose name starts the same: the download's pattern
    # (azpytest-shop-<shard>-<attempt>) leaves it out, else test_refund_total reruns.
    "azpytest-shop-slow-0-1": {"tests/test_refunds.py::test_refund_total": "failure"},
    # Not azpytest's at all.
    "coverage-report": {"tests/test_refunds.py::test_refund_total": "failure"},
}


def test_rerun_only_the_failures_of_an_earlier_run(act: Act, shop_world: World) -> None:
    run = act(
        "azure-tests-rerun.yml",
        shop_world(),
        event="workflow_dispatch",
        payload={"inputs": {"rerun-failed-of-run": EARLIER_RUN, "tests": "", "debug": False}},
        # act differs: github.token is empty unless given as the GITHUB_TOKEN secret, and
        # download-artifact (v4, and the stand-in) ignores run-id without a token.
        secrets={"GITHUB_TOKEN": "e2e-token-not-github"},
        store={
            EARLIER_RUN: {
                name: {"junit.xml": _earlier_junit(cases)} for name, cases in EARLIER.items()
            }
        },
    )

    assert run.returncode == 0, run.explain()
    assert run.jobs() == ONE_SHARD_GREEN
    log = run.lines("test (shard=0)")
    assert any(line.startswith("azpytest: rerunning the 2 failed test(s) of ") for line in log), (
        "\n".join(log)
    )

    # Only the earlier failure and the earlier error ran again (and pass now).
    [(name, artifact)] = run.uploaded().items()
    assert name == "azpytest-shop-0-1"
    assert junit_cases(artifact / "junit.xml") == {
        "tests/test_orders.py::test_largest_order": "passed",
        "tests/test_settings.py::test_api_key_in_the_environment": "passed",
    }
    assert run.summary("merge").startswith("### ✅ 2 passed in ")
    # What the reusable workflow hands back to its caller (workflow_call outputs).
    assert run.outputs() == {
        "total": "2",
        "passed": "2",
        "failed": "0",
        "errors": "0",
        "skipped": "0",
        "failed-tests": "",
        "artifact-name": "azpytest-shop",
    }
    assert (run.out / "result.txt").read_text() == "success"
    assert_no_secret(run, run.out, run.store)


def test_two_calls_in_one_run_keep_their_own_results(act: Act, shop_world: World) -> None:
    run = act("azure-tests-two-suites.yml", shop_world())

    # The refunds suite fails; GitHub's "409 Conflict" for a name uploaded twice never shows.
    assert run.returncode != 0
    assert "(409) Conflict" not in run.output, run.explain()
    orders, refunds = run.call("orders"), run.call("refunds")
    assert orders.jobs() == {
        "plan": "success",
        "test (shard=0)": "success",
        "test (shard=1)": "success",
        "merge": "success",
    }, orders.explain()
    assert refunds.jobs()["merge"] == "failure", refunds.explain()

    # Each call named itself (no input): its shards uploaded <name>-<shard>-1.
    names = {
        call: side.step_outputs("plan", "plan")["artifact-name"]
        for call, side in (("orders", orders), ("refunds", refunds))
    }
    assert re.fullmatch(r"azpytest-[0-9a-f]{8}", names["orders"]), names
    assert names["orders"] != names["refunds"], names
    uploaded = run.uploaded()
    assert sorted(uploaded) == sorted(f"{names[c]}-{i}-1" for c in names for i in (0, 1))
    assert {
        node: outcome
        for i in (0, 1)
        for node, outcome in junit_cases(
            uploaded[f"{names['refunds']}-{i}-1"] / "junit.xml"
        ).items()
    } == {
        "tests/test_refunds.py::test_refund_allowed": "passed",
        "tests/test_refunds.py::test_refund_total": "failure",
    }

    # Each merge counted its own call's two shards and nothing else.
    for call, side, first in (
        ("orders", orders, "### ✅ 4 passed in "),
        ("refunds", refunds, "### ❌ 1 failed, 1 passed in "),
    ):
        summary = side.summary("merge")
        assert summary.startswith(first), summary
        other = names["refunds" if call == "orders" else "orders"]
        assert other not in summary, summary
        pytest.LineMatcher(summary.splitlines()).fnmatch_lines(
            [
                "#### Shards (2 JUnit files)",
                "*",
                "*",
                f"| `{names[call]}-0-1/junit.xml` | * |",
                f"| `{names[call]}-1-1/junit.xml` | * |",
            ]
        )
    # What each call hands its caller: the merge job's outputs. (act differs: it runs no job
    # after a failed one, so no probe job reads the calls' outputs here.)
    counts = ("total", "passed", "failed", "errors", "skipped", "failed-tests")
    assert {k: orders.step_outputs("merge", "report")[k] for k in counts} == {
        "total": "4",
        "passed": "4",
        "failed": "0",
        "errors": "0",
        "skipped": "0",
        "failed-tests": "",
    }
    assert {k: refunds.step_outputs("merge", "report")[k] for k in counts} == {
        "total": "2",
        "passed": "1",
        "failed": "1",
        "errors": "0",
        "skipped": "0",
        "failed-tests": "tests/test_refunds.py::test_refund_total",
    }
    assert_no_secret(run, run.out, run.store)


def _rerun(
    act: Act,
    world: dict[str, Any],
    earlier: dict[str, dict[str, str]],
    env: dict[str, str] | None = None,
    current: dict[str, dict[str, str]] | None = None,
    **inputs: Any,
) -> ActRun:
    """azure-tests-rerun.yml dispatched with `inputs`, the earlier run's shards' JUnit
    (`earlier`: artifact name -> cases) in the store, and this run's own earlier attempts
    (`current`, under act's run id 1)."""
    store = {EARLIER_RUN: {name: {"junit.xml": _earlier_junit(c)} for name, c in earlier.items()}}
    if current:
        store["1"] = {name: {"junit.xml": _earlier_junit(c)} for name, c in current.items()}
    return act(
        "azure-tests-rerun.yml",
        world,
        event="workflow_dispatch",
        payload={
            "inputs": {"rerun-failed-of-run": EARLIER_RUN, "tests": "", "debug": False, **inputs}
        },
        secrets={"GITHUB_TOKEN": "e2e-token-not-github"},  # act differs: see above
        store=store,
        env=env,
    )


ORDERS_PASSED = {
    "tests/test_orders.py::test_orders_total": "passed",
    "tests/test_orders.py::test_largest_order": "passed",
}


def test_rerunning_a_run_with_no_failures_is_green_and_says_so(act: Act, shop_world: World) -> None:
    run = _rerun(act, shop_world(), {"azpytest-shop-0-1": ORDERS_PASSED})

    assert run.returncode == 0, run.explain()
    assert run.jobs() == ONE_SHARD_GREEN
    said = "Nothing to rerun: "
    assert any(n.split("::", 2)[-1].startswith(said) for n in run.annotations("notice", "merge"))
    summary = run.summary("merge")
    assert summary.startswith("### ✅ no tests ran"), summary
    assert said in summary
    assert run.outputs()["total"] == "0" and run.outputs()["failed-tests"] == ""
    assert (run.out / "result.txt").read_text() == "success"


def test_three_shards_rerunning_one_failure_are_green_but_for_it(
    act: Act, shop_world: World
) -> None:
    earlier = {
        "azpytest-shop-0-1": {
            "tests/test_orders.py::test_orders_total": "passed",
            "tests/test_refunds.py::test_refund_total": "failure",
        },
        "azpytest-shop-1-1": {"tests/test_orders.py::test_largest_order": "passed"},
    }
    run = _rerun(act, shop_world(), earlier, shards=3)

    # The one failing test fails again (it really fails); the two shards with no test pass.
    assert run.returncode != 0
    jobs = run.jobs()
    assert sorted(jobs) == ["merge", "plan", "test (shard=0)", "test (shard=1)", "test (shard=2)"]
    empty = []
    for index in range(3):
        job = f"test (shard={index})"
        failed = [name for result, name in run.steps(job) if result != "success"]
        notices = [n for n in run.annotations("notice", job) if "got no test" in n]
        if notices:
            empty.append(index)
            assert failed == [], run.steps(job)  # act differs: the job result may say failure
    assert len(empty) == 2, run.explain()
    outputs = run.step_outputs("merge", "report")
    assert {k: outputs[k] for k in ("total", "passed", "failed", "errors")} == {
        "total": "1",
        "passed": "0",
        "failed": "1",
        "errors": "0",
    }
    assert outputs["failed-tests"] == "tests/test_refunds.py::test_refund_total"
    assert run.summary("merge").startswith("### ❌ 1 failed in ")


def test_attempt_2_of_a_run_merges_one_result_per_test(act: Act, shop_world: World) -> None:
    """Re-run jobs: attempt 1 of this run left a shard whose test failed; attempt 2 runs it
    again and the merge keeps the latest attempt of each shard."""
    run = _rerun(
        act,
        shop_world(),
        {},
        env={"GITHUB_RUN_ATTEMPT": "2"},
        current={
            "azpytest-shop-0-1": {
                **ORDERS_PASSED,
                "tests/test_orders.py::test_largest_order": "failure",
            }
        },
        **{"rerun-failed-of-run": "", "tests": "tests/test_orders.py"},
    )

    assert run.returncode == 0, run.explain()
    assert sorted(run.uploaded()) == ["azpytest-shop-0-1", "azpytest-shop-0-2"]
    outputs = run.outputs()
    assert (outputs["total"], outputs["passed"], outputs["failed"]) == ("4", "4", "0")
    assert run.summary("merge").startswith("### ✅ 4 passed in ")
    assert any(
        "azpytest-shop-0 (attempt 2; 1 earlier left out)" in n
        for n in run.annotations("notice", "merge")
    )
