"""Misconfigurations users make, run by act: the job fails at prepare with the diagnosis
(what failed, why, the fix) in act's output and in the job summary, and leaves nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actrun import CLIENT, MAIN, REPOSITORY, ActRun, assert_no_secret

from azpytest.rundir import RunDir
from azpytest.steps.cleanup import credential_files

Act = Callable[..., ActRun]
World = Callable[..., dict[str, Any]]

PULL_REQUEST = {
    "number": 7,
    "pull_request": {
        "number": 7,
        "head": {
            "ref": "refunds",
            "sha": "b" * 40,
            "repo": {"full_name": REPOSITORY, "fork": False},
        },
        "base": {"ref": "main", "sha": "a" * 40, "repo": {"full_name": REPOSITORY}},
    },
    "repository": {"full_name": REPOSITORY, "name": "octo-repo", "owner": {"login": "octo-org"}},
}


def _failed_at_prepare(run: ActRun) -> None:
    assert run.returncode != 0
    assert run.jobs() == {"integration": "failure"}, run.explain()
    failed = [name for result, name in run.steps("integration") if result == "failure"]
    assert failed == [
        "Main Prepare credentials, secrets and connections",
        "Main Integration tests",
    ], run.steps("integration")
    ran = [name for _, name in run.steps("integration")]
    assert "Main Run the tests" not in ran
    assert "Main Report" not in ran
    # prepare names its run folder before anything can fail, so what it recorded (the audit
    # log of any secret access) is uploaded; never a credential.
    uploaded = run.uploaded()
    assert list(uploaded) == ["azpytest-integration-0-1"]
    files = sorted(p.name for p in uploaded["azpytest-integration-0-1"].rglob("*") if p.is_file())
    assert set(files) <= {"audit.jsonl"}, files
    # Nothing that could hold a credential is left, whatever prepare got to.
    run_dir = run.out / "runner-temp" / "azpytest" / "1-1-integration"
    assert credential_files(RunDir(run_dir)) == []


def test_subject_not_matching_the_federated_credential(act: Act, shop_world: World) -> None:
    # The app trusts pushes to main only; the workflow runs on a pull request, whose OIDC
    # subject is repo:OWNER/REPO:pull_request. (The sandbox issues the token: its GitHub
    # context is set to the event act runs, as GitHub's would be.)
    run = act(
        "pull-request.yml",
        shop_world(
            subject=MAIN,
            event_name="pull_request",
            ref="refs/pull/7/merge",
            workflow_file="pull-request.yml",
        ),
        event="pull_request",
        payload=PULL_REQUEST,
    )
    _failed_at_prepare(run)

    headline = f"Entra ID found no federated credential on app {CLIENT} for this job (AADSTS70021)."
    subject = f"repo:{REPOSITORY}:pull_request"
    [error] = run.annotations("error")
    assert headline in error.replace("%0A", "\n"), error
    assert subject in error
    summary = run.summary("integration")
    assert headline in summary
    assert f"| assertion subject | `{subject}` |" in summary
    assert "| assertion issuer | `https://token.actions.githubusercontent.com` |" in summary
    assert "| assertion audience | `api://AzureADTokenExchange` |" in summary
    # The exact credential to add, for this subject.
    assert f'"subject": "{subject}"' in summary
    assert f"az ad app federated-credential create --id {CLIENT}" in summary
    # Entra's own words reach the log too.
    assert any("AADSTS70021" in line for line in run.lines("integration"))
    # Nothing was read from Key Vault (its first, unauthenticated request is the challenge).
    assert [e for e in run.sandbox.log.select(service="keyvault") if e.status == 200] == []
    assert_no_secret(run, run.out)


def test_missing_id_token_permission(act: Act, shop_world: World) -> None:
    # act differs: it ignores `permissions:`. GitHub gives a job without `id-token: write`
    # no ACTIONS_ID_TOKEN_REQUEST_URL; the test withholds it the same way.
    run = act("no-id-token.yml", shop_world(), id_token=False)
    _failed_at_prepare(run)

    [error] = run.annotations("error")
    assert error.startswith(
        "::error title=azpytest prepare%3A GitHub gave this job no OIDC token "
        "(ACTIONS_ID_TOKEN_REQUEST_URL is not set).::"
    ), error
    summary = run.summary("integration")
    assert "```yaml\npermissions:\n  id-token: write" in summary, summary
    assert run.sandbox.log.select(service="github") == []
    assert [e for e in run.sandbox.log.select(service="keyvault") if e.status == 200] == []
    assert_no_secret(run, run.out)
