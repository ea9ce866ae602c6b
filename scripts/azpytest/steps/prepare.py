"""`azpytest prepare`: the credential, the Key Vault secrets, and the environment for the tests.

Inside Actions the secrets go to later steps through GITHUB_ENV (masked first); outside, to a
0600 file of `export` lines in the run folder that the shell can source. In both cases
`prepared.json` records what was prepared — names, never values — for the later steps.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shlex
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from azpytest import errors, identity, keyvault, rundir
from azpytest.github import Workflow
from azpytest.inputs import SecretSpec
from azpytest.settings import Settings


def run(settings: Settings, workflow: Workflow) -> int:
    for note in settings.notes:
        workflow.warning(note)
    if settings.dotenv_withheld:
        workflow.warning(errors.dotenv_withheld(settings.env_file, settings.dotenv_withheld))
    settings = settings.claim_run_dir(new=True)
    run_dir = settings.rundir
    # Known to the later steps at once: a failed prepare still uploads its audit log.
    workflow.set_output("run-dir", str(run_dir.path))
    workflow.set_env(rundir.ENV_VARIABLE, str(run_dir.path))
    if not settings.debug:
        # azure-identity logs each refusal with Entra's whole JSON; the diagnosis says it once.
        logging.getLogger("azure.identity").setLevel(logging.ERROR)
    who = identity.build(settings, workflow)
    print(f"azpytest: credential: {who.description}", flush=True)
    extra: tuple[SecretSpec, ...] = ()
    if settings.profiles is not None:
        # The profiles' Key Vault fields are fetched (and masked) with the other secrets.
        extra = tuple(s for s in settings.profiles.required_secrets() if s not in settings.secrets)
        settings = dataclasses.replace(settings, secrets=settings.secrets + extra)
    kubeconfig: Path | None = None
    try:
        fetched, kubeconfig = _read(settings, who, workflow)
    except errors.Diagnosis as diagnosis:
        return errors.die(_named_in_profiles(diagnosis, settings, extra), workflow, "prepare")
    finally:
        who.close()

    fetched = [_ends(secret, settings, workflow) for secret in fetched]
    for secret in fetched:
        workflow.set_env(secret.env, secret.value)
    # Later steps (and the plugin in the test process) find the identity here.
    for name, value in (
        ("AZPYTEST_TENANT_ID", settings.tenant_id),
        ("AZPYTEST_CLIENT_ID", settings.client_id),
        ("AZPYTEST_SUBSCRIPTION_ID", settings.subscription_id),
        ("AZPYTEST_CLOUD", settings.cloud.name),
    ):
        if value:
            workflow.set_env(name, value)
    if kubeconfig is not None:
        workflow.set_env("KUBECONFIG", str(kubeconfig))
        workflow.set_output("kubeconfig-path", str(kubeconfig))
        # The names existing AKS suites read the cluster from; never over a value the job set.
        for name, value in (
            ("AZURE_SUBSCRIPTION_ID", settings.subscription_id),
            ("AZURE_RESOURCE_GROUP", settings.aks_resource_group),
            ("AZURE_AKS_CLUSTER_NAME", settings.aks_cluster),
        ):
            if value and not workflow.environ.get(name):
                workflow.set_env(name, value)
    if settings.profiles is not None:
        from azpytest import profiles

        for name, value in profiles.write(settings.profiles, run_dir).items():
            workflow.set_env(name, value)
        if settings.profiles.dbt is not None:
            dbt = settings.profiles.dbt
            checked = (
                f"; its profile: matches {settings.dbt_project / profiles.DBT_PROJECT_FILE}"
                if settings.dbt_project is not None
                else ""
            )
            print(
                f"azpytest: dbt: profile {dbt.profile}, target {dbt.target} (connection "
                f"{dbt.connection}) written to {run_dir.path / profiles.PROFILES_FILE}; "
                f"DBT_PROFILES_DIR={run_dir.path}{checked}",
                flush=True,
            )
    prepared = run_dir.write_prepared(_record(settings, who, fetched))

    if fetched:
        names = ", ".join(f"{s.env} <- {s.name}" for s in fetched)
        print(
            f"azpytest: Key Vault {settings.vault_name}: {len(fetched)} secret(s), values "
            f"masked: {names}",
            flush=True,
        )
    if not workflow.in_actions:
        lines = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in workflow.exported.items())
        env_file = run_dir.write_private(rundir.LOCAL_ENV, lines)
        print(
            f"azpytest: environment written to {env_file} (mode 0600); load it with:\n"
            f"  set -a; . {shlex.quote(str(env_file))}; set +a",
            flush=True,
        )
    print(f"azpytest: prepared: {prepared}", flush=True)
    return 0


def _read(
    settings: Settings, who: identity.Identity, workflow: Workflow
) -> tuple[list[keyvault.FetchedSecret], Path | None]:
    """Key Vault's secrets and the cluster's kubeconfig, the two read side by side (ARM's
    round trips overlap Key Vault's). Key Vault's diagnosis first when both fail."""
    if not settings.key_vault and not settings.aks_cluster:
        # Nothing to read: still prove the login works now, not in the middle of the tests.
        who.get_token(settings.cloud.arm_scope)
        return [], None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="arm") as side:
        cluster: Future[Path] | None = None
        if settings.aks_cluster:
            from azpytest import kube

            cluster = side.submit(kube.write_kubeconfig, settings, who, workflow)
        fetched: list[keyvault.FetchedSecret] = []
        if settings.key_vault:
            fetched = keyvault.fetch(settings, who, keyvault.AuditLog(settings.rundir.audit))
        return fetched, cluster.result() if cluster is not None else None


def _ends(
    secret: keyvault.FetchedSecret, settings: Settings, workflow: Workflow
) -> keyvault.FetchedSecret:
    """Whitespace at the ends of a value: stripped with strip-secret-whitespace; otherwise kept,
    with one warning naming the secret when the value is one line (a PEM ends in a newline)."""
    value = secret.value
    stripped = value.strip()
    if not stripped or stripped == value:
        return secret
    if settings.strip_secret_whitespace:
        workflow.mask(stripped)  # masked already as a line of the value; never trust that
        print(errors.secret_whitespace_stripped(secret.name, secret.env), flush=True)
        return dataclasses.replace(secret, value=stripped)
    if "\n" not in stripped:
        workflow.warning(errors.secret_whitespace(secret.name, secret.env))
    return secret


def _named_in_profiles(
    diagnosis: errors.Diagnosis, settings: Settings, extra: tuple[SecretSpec, ...]
) -> errors.Diagnosis:
    """A missing secret that only the `profiles` input names is reported against it: the
    connection and field that name it, not the `secrets` input."""
    if diagnosis.kind != "keyvault-secret-not-found" or settings.profiles is None:
        return diagnosis
    for connection in settings.profiles.connections:
        for field, value in connection.values():
            spec = SecretSpec(source=value.secret or "", env=value.env)
            if spec in extra and diagnosis.what.endswith(f" {value.secret!r}."):
                return errors.profiles_secret_not_found(
                    diagnosis, vault=settings.vault_name or "", secret=spec.source,
                    where=f"connections.{connection.name}.{field}",
                )  # fmt: skip
    return diagnosis


def _record(
    settings: Settings, who: identity.Identity, fetched: list[keyvault.FetchedSecret]
) -> dict[str, Any]:
    return {
        "version": 1,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run_dir": str(settings.run_dir),
        "credential": "github-oidc" if who.assertion is not None else "default",
        "tenant_id": settings.tenant_id,
        "client_id": settings.client_id,
        "object_id": who.principal.get("oid"),
        "subscription_id": settings.subscription_id,
        "cloud": settings.cloud.name,
        "key_vault": settings.key_vault,
        "secrets": [
            {"name": s.name, "env": s.env, "version": s.version, "content_type": s.content_type}
            for s in fetched
        ],
        # The variables whose values later steps must scrub from anything they write.
        "masked_env": sorted({s.env for s in fetched}),
        "audit_log": str(settings.rundir.audit) if settings.key_vault else None,
        "kubeconfig": str(settings.rundir.kubeconfig) if settings.aks_cluster else None,
        "dbt": _dbt_record(settings),
    }


def _dbt_record(settings: Settings) -> dict[str, Any] | None:
    """The dbt profile written (where, which profile and target; never a value)."""
    if settings.profiles is None or settings.profiles.dbt is None:
        return None
    from azpytest import profiles

    dbt = settings.profiles.dbt
    return {
        "profiles_yml": str(settings.rundir.path / profiles.PROFILES_FILE),
        "profiles_dir": str(settings.rundir.path),
        "profile": dbt.profile,
        "target": dbt.target,
        "connection": dbt.connection,
        "type": dbt.type,
        "project": str(settings.dbt_project) if settings.dbt_project is not None else None,
    }
