"""Every failure text a user reads, in one place: what failed, the likely cause, the exact fix.

A `Diagnosis` is raised where a failure is understood; the entry point hands it to `die()`,
which writes the `::error::` annotation, a section of the job summary and the exit code.
Shorter texts — a warning, a fixture's skip, a refusal of the token broker, a line of
kube-token under kubectl — are functions (or constants) here that take the facts and return
the text; the caller only decides where it goes. Bad input is not a diagnosis: `InputError`
(settings.py) exits 2 with one line, its text beside the grammar that checks it.

Imported under kubectl (kube-token) and by the pytest plugin: the standard library and
azpytest.github only.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from azpytest.github import Workflow


@dataclass
class Diagnosis(Exception):
    kind: str  # machine-readable, stable (the audit log records it): "keyvault-forbidden"
    what: str  # one line: what failed
    cause: str  # the likely reason
    fix: str  # the exact fix; may hold a fenced code block
    details: list[tuple[str, str]] = field(default_factory=list)  # facts shown side by side
    exit_code: int = 1
    transient: bool = False  # the service may answer later (the broker says 503, not 400)

    def __str__(self) -> str:
        return f"{self.what} {self.cause}"

    def text(self) -> str:
        lines = [self.what, "", f"Likely cause: {self.cause}"]
        if self.details:
            width = max(len(k) for k, _ in self.details)
            lines += ["", *(f"  {k.ljust(width)}  {v}" for k, v in self.details)]
        lines += ["", "Fix:", *(f"  {line}" if line else "" for line in self.fix.splitlines())]
        return "\n".join(lines)

    def markdown(self) -> str:
        parts = [f"### ❌ {self.what}", "", f"**Likely cause:** {self.cause}", ""]
        if self.details:
            parts += ["| | |", "| --- | --- |", *(f"| {k} | `{v}` |" for k, v in self.details), ""]
        parts += ["**Fix:**", "", self.fix, ""]
        return "\n".join(parts)


def die(diagnosis: Diagnosis, workflow: Workflow, step: str) -> int:
    """Report a diagnosis everywhere the user looks; return the exit code."""
    if workflow.in_actions:
        workflow.error(diagnosis.text(), title=f"azpytest {step}: {diagnosis.what}")
        workflow.summary(diagnosis.markdown())
    else:
        print(f"azpytest {step}: error: {diagnosis.text()}", file=sys.stderr, flush=True)
    return diagnosis.exit_code


def bad_input(step: str, exc: Exception, workflow: Workflow) -> int:
    """Bad input: exit 2 and one line naming the input and the fix (an annotation in Actions)."""
    print(f"azpytest {step}: error: {exc}", file=sys.stderr, flush=True)
    if workflow.in_actions:
        workflow.error(str(exc), title=f"azpytest {step}: bad input")
    return 2


# ---------------------------------------------------------------------------- GitHub OIDC


def _event(environ: Mapping[str, str]) -> dict[str, Any]:
    path = environ.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def no_oidc_request(environ: Mapping[str, str]) -> Diagnosis:
    event_name = environ.get("GITHUB_EVENT_NAME", "")
    if event_name in ("pull_request", "pull_request_review", "pull_request_review_comment"):
        head = _event(environ).get("pull_request", {}).get("head", {}).get("repo") or {}
        if head.get("fork") or (
            head.get("full_name") and head.get("full_name") != environ.get("GITHUB_REPOSITORY")
        ):
            return Diagnosis(
                kind="github-oidc-fork",
                what="GitHub gave this job no OIDC token: the pull request comes from a fork.",
                cause=(
                    "GitHub never issues OIDC tokens to workflows run for pull requests from "
                    "forks, whatever the permissions say, so the fork's code cannot reach "
                    "your Azure."
                ),
                fix=(
                    "Skip the Azure job for fork pull requests, keeping pushes and pull "
                    "requests from branches of this repository:\n\n```yaml\nif: "
                    "github.event_name != 'pull_request' || "
                    "!github.event.pull_request.head.repo.fork\n```\n\nand run the fork's "
                    "tests after review with `workflow_dispatch` on its branch. Do not switch "
                    "to `pull_request_target` to get a token: it runs with this repository's "
                    "permissions, so checking out and running the fork's code there hands that "
                    "code your Azure access."
                ),
            )
    return Diagnosis(
        kind="github-oidc-permission",
        what="GitHub gave this job no OIDC token (ACTIONS_ID_TOKEN_REQUEST_URL is not set).",
        cause="the job lacks the `id-token: write` permission.",
        fix=(
            "Add the permission to the job (or the workflow), keeping `contents: read`:\n\n"
            "```yaml\npermissions:\n  id-token: write   # lets the job ask GitHub for its OIDC "
            "token\n  contents: read\n```\n\nA reusable workflow gets it only if the caller's "
            "job grants it too."
        ),
    )


def oidc_request_failed(status: int, host: str) -> Diagnosis:
    return Diagnosis(
        kind="github-oidc-refused",
        what=f"GitHub's OIDC endpoint ({host}) refused the token request with HTTP {status}.",
        cause=(
            "the runner's request token (ACTIONS_ID_TOKEN_REQUEST_TOKEN) is missing, "
            "expired or was replaced by a step; it is valid only for the job's own steps."
        ),
        fix=(
            "Do not set or overwrite ACTIONS_ID_TOKEN_REQUEST_TOKEN or "
            "ACTIONS_ID_TOKEN_REQUEST_URL in the workflow; rerun the job."
        ),
    )


# ---------------------------------------------------------------------------- Entra ID

_AADSTS = re.compile(r"AADSTS(\d+)")


def aadsts_code(message: str) -> int | None:
    found = _AADSTS.search(message)
    return int(found.group(1)) if found else None


def _first_line(message: str) -> str:
    found = re.search(r"(AADSTS\d+:[^\r\n]*?)(?: Trace ID:|$)", message, re.M)
    return found.group(1).strip() if found else message.strip().splitlines()[0]


def entra_refused(
    message: str, *, tenant_id: str, client_id: str, claims: Mapping[str, Any] | None, audience: str
) -> Diagnosis:
    """Diagnose an Entra refusal of the federated (GitHub OIDC) login."""
    code = aadsts_code(message)
    said = _first_line(message)
    claims = claims or {}
    iss = str(claims.get("iss", "https://token.actions.githubusercontent.com"))
    sub = str(claims.get("sub", "?"))
    aud = claims.get("aud", audience)
    aud_text = ",".join(aud) if isinstance(aud, list) else str(aud)
    facts = [("Entra said", said), ("tenant-id", tenant_id), ("client-id", client_id)]
    if code in (70021, 7002138):
        name = re.sub(r"[^A-Za-z0-9-]+", "-", sub.split(":", 2)[-1])[:100].strip("-") or "github"
        parameters = json.dumps(
            {"name": name, "issuer": iss, "subject": sub, "audiences": [aud_text]}
        )
        facts += [
            ("assertion issuer", iss),
            ("assertion subject", sub),
            ("assertion audience", aud_text),
            ("job_workflow_ref", str(claims.get("job_workflow_ref", "?"))),
            ("ref", str(claims.get("ref", "?"))),
        ]
        if claims.get("environment"):
            facts.append(("environment", str(claims["environment"])))
        case = (
            " The subject differs from a configured one only in letter case; matching is "
            "case-sensitive."
            if code == 7002138
            else ""
        )
        return Diagnosis(
            kind="entra-no-federated-credential",
            what=f"Entra ID found no federated credential on app {client_id} for this job "
            f"(AADSTS{code}).",
            cause=(
                "the app's federated credentials do not list this exact issuer, subject and "
                f"audience.{case} The subject changes with the trigger: a job with "
                "`environment:` presents `repo:O/R:environment:NAME`, a pull request "
                "`repo:O/R:pull_request`, a tag `repo:O/R:ref:refs/tags/T`; a reusable "
                "workflow presents its caller's subject, not its own path."
            ),
            fix=(
                "Add a federated credential with exactly these values (Entra ID > App "
                "registrations > Certificates & secrets > Federated credentials), or run:\n\n"
                f"```sh\naz ad app federated-credential create --id {client_id} "
                f"--parameters '{parameters}'\n```"
            ),
            details=facts,
        )
    if code in (700016, 90002):
        return Diagnosis(
            kind="entra-app-not-found",
            what=f"Entra ID does not know app {client_id} in tenant {tenant_id} (AADSTS{code}).",
            cause=(
                "client-id or tenant-id is wrong: the app registration does not exist in "
                "that directory (or the tenant ID is mistyped)."
            ),
            fix=(
                "Use the Application (client) ID and Directory (tenant) ID from the app's "
                "Overview page in Entra ID (`az ad app show --id <app> --query appId`)."
            ),
            details=facts,
        )
    if code == 700024:
        return Diagnosis(
            kind="entra-assertion-expired",
            what="Entra ID refused the GitHub token as outside its valid time range "
            "(AADSTS700024).",
            cause=(
                "the assertion expired before it was used (GitHub's tokens live 5 minutes) "
                "or the runner's clock is wrong. azpytest asks GitHub for a fresh token for "
                "every Entra request, so a long gap or clock skew is the likely cause."
            ),
            fix=(
                "Check the runner's clock (`date -u`; self-hosted runners need NTP) and "
                "rerun the job."
            ),
            details=facts,
        )
    return Diagnosis(
        kind="entra-refused",
        what=f"Entra ID refused to issue a token for app {client_id}"
        + (f" (AADSTS{code})." if code else "."),
        cause="see what Entra said below.",
        fix=(
            f"Look up the code at https://login.microsoftonline.com/error?code={code}"
            if code
            else "Check tenant-id, client-id and the app's federated credentials."
        ),
        details=facts,
    )


def local_credential_failed(message: str) -> Diagnosis:
    return Diagnosis(
        kind="local-credential-failed",
        what="No local Azure credential could get a token (DefaultAzureCredential).",
        cause="nothing is logged in here: every credential in the chain was tried.",
        fix=(
            "Log in with `az login` (or set AZURE_CLIENT_ID/AZURE_TENANT_ID with a client "
            "secret or certificate), then rerun. What each credential said:\n\n"
            f"```\n{message.strip()}\n```"
        ),
    )


# ---------------------------------------------------------------------------- Key Vault


def vault_failed(*, vault: str, secret: str | None, status: int | None, message: str) -> Diagnosis:
    doing = f"for secret {secret!r}" if secret else "when listing secrets"
    return Diagnosis(
        kind="keyvault-failed",
        what=f"Key Vault {vault} answered HTTP {status} {doing}.",
        cause=message,
        fix="Retry the job; if it persists, check the vault's health in the Azure portal.",
    )


def vault_forbidden(
    *,
    vault: str,
    secret: str | None,
    client_id: str,
    object_id: str,
    action: str,
    resource: str | None,
) -> Diagnosis:
    target = f"secret {secret!r} of vault {vault}" if secret else f"vault {vault}"
    scope = resource or f"<the vault's resource id (az keyvault show -n {vault} --query id)>"
    return Diagnosis(
        kind="keyvault-forbidden",
        what=f"Key Vault refused {target} to this job's identity (403 ForbiddenByRbac).",
        cause=(
            f"the identity (client id {client_id}, object id {object_id}) has no role "
            f"granting the data action {action} on {target}."
        ),
        fix=(
            'Grant it "Key Vault Secrets User" on the vault (or on the one secret):\n\n'
            f'```sh\naz role assignment create --role "Key Vault Secrets User" '
            f"--assignee-object-id {object_id} --assignee-principal-type ServicePrincipal "
            f"--scope {scope}\n```\n\nA vault that uses access policies instead of RBAC needs "
            "a policy with Get (and List, for globs) on secrets."
        ),
        details=[("client id", client_id), ("object id", object_id), ("data action", action)],
    )


def secret_not_found(*, vault: str, secret: str, close: list[str]) -> Diagnosis:
    hint = f" Close names that exist: {', '.join(close)}." if close else ""
    return Diagnosis(
        kind="keyvault-secret-not-found",
        what=f"Key Vault {vault} has no secret named {secret!r}.",
        cause=f"the name in the secrets input is misspelt, or the secret was deleted.{hint}",
        fix=(
            f"Correct the name in `secrets`, or create it: `az keyvault secret set "
            f"--vault-name {vault} --name {secret} --file <value-file>`."
        ),
    )


def secret_unusable(*, vault: str, secret: str, state: str) -> Diagnosis:
    return Diagnosis(
        kind="keyvault-secret-unusable",
        what=f"Key Vault secret {secret!r} of {vault} is {state}.",
        cause=f"a secret named in the secrets input must be enabled and current; this one is "
        f"{state}.",
        fix=(
            f"Enable it or add a current version (`az keyvault secret set-attributes "
            f"--vault-name {vault} --name {secret} --enabled true`), or remove it from "
            "`secrets`."
        ),
    )


def secret_skipped(*, vault: str, secret: str, state: str, glob: str) -> str:
    """Warning: a secret a glob matched is disabled, expired or not yet valid."""
    return (
        f"Key Vault secret {secret!r} of {vault} is {state}; skipped (taken by the glob {glob!r})"
    )


def secret_name_denied(*, vault: str, secret: str, env: str, glob: str) -> str:
    """Warning: a glob matched a secret whose variable would change how programs start."""
    return (
        f"Key Vault secret {secret!r} of {vault} would set {env}, which changes how later "
        f"steps' programs start or which credential they use; skipped (taken by the glob "
        f"{glob!r}). Map it to another name to use it: `MY_{env}: {secret}`"
    )


def secret_too_short(*, vault: str, secret: str, env: str) -> str:
    """Warning: a value so short that masking it blanks pieces of unrelated log text."""
    return (
        f"Key Vault secret {secret!r} of {vault} ({env}) is shorter than 4 characters: the "
        "runner masks it wherever those characters appear in the log, inside other words too, "
        "and files are not scrubbed of it. Store a longer value, or keep it out of the "
        "secrets if it is not secret (a port, a region)."
    )


# ---------------------------------------------------------------------------- network


def proxy_in_use(environ: Mapping[str, str] | None = None, host: str | None = None) -> str | None:
    """The proxy a request to `host` goes through (HTTPS_PROXY, ALL_PROXY), or None when
    there is none or NO_PROXY sends `host` direct."""
    env = os.environ if environ is None else environ
    if host is not None and _no_proxy(host, env.get("NO_PROXY") or env.get("no_proxy") or ""):
        return None
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        if env.get(name):
            return env[name]
    return None


def _no_proxy(host: str, no_proxy: str) -> bool:
    name = host.lower().rsplit(":", 1)[0] if host.count(":") == 1 else host.lower()
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if entry == "*":
            return True
        entry = entry.lstrip("*").lstrip(".")
        if entry and (name == entry or name.endswith("." + entry)):
            return True
    return False


def route(host: str, environ: Mapping[str, str] | None = None) -> str:
    """How a request to `host` went: through which proxy, or directly and why."""
    env = os.environ if environ is None else environ
    proxy = proxy_in_use(env, host)
    if proxy:
        return f"through the proxy {_strip_userinfo(proxy)} (HTTPS_PROXY)"
    if proxy_in_use(env):
        return "directly (NO_PROXY names it)"
    return "directly (no HTTPS_PROXY set)"


def unreachable(host: str, error: str, environ: Mapping[str, str] | None = None) -> Diagnosis:
    proxy = proxy_in_use(environ, host)
    via = route(host, environ)
    return Diagnosis(
        kind="unreachable",
        what=f"Could not reach {host} {via}.",
        cause=(
            "the host name is wrong, or the network (firewall, proxy, DNS) blocks it: "
            f"{error.strip().splitlines()[0] if error.strip() else 'no answer'}"
        ),
        fix=(
            f"Check the name, then from the runner: `curl -sv https://{host}/ -o /dev/null`"
            + (" (the proxy must allow CONNECT to it)." if proxy else ".")
        ),
    )


# The services a diagnosis names, as users know them, and the kind's prefix for each.
GITHUB_OIDC = "GitHub OIDC"
ENTRA = "Entra ID"
KEY_VAULT = "Key Vault"
ARM = "ARM"
AKS_API = "the AKS API server"
_SLUGS = {GITHUB_OIDC: "github-oidc", ENTRA: "entra", KEY_VAULT: "keyvault", ARM: "arm"}
_STATUS_PAGES = {GITHUB_OIDC: "https://www.githubstatus.com"}


def service_unavailable(
    *, service: str, host: str, said: str, environ: Mapping[str, str] | None = None
) -> Diagnosis:
    """A service kept failing in a way that may pass (429, 5xx, a reset, a timeout, a body
    that is not JSON) until the deadline. `said`: the last answer, the tries and the bound."""
    via = route(host, environ)
    status = _STATUS_PAGES.get(service, "https://azure.status.microsoft")
    return Diagnosis(
        kind=f"{_SLUGS.get(service, 'aks-api')}-unavailable",
        what=f"{service} ({host}) did not answer usably: {said}.",
        cause=(
            f"{service} is down, throttling or overloaded, or the network between ({via}) "
            "drops the connection; azpytest retried with backoff until the deadline."
        ),
        fix=(
            f"Rerun the job; if it persists, check {status}"
            + (" and the proxy" if proxy_in_use(environ, host) else "")
            + ". A slow but working service needs a longer `timeout` input "
            "(AZPYTEST_TIMEOUT, seconds; default 40)."
        ),
        details=[("service", service), ("host", host), ("answered", said), ("route", via)],
        transient=True,
    )


def not_json(status: int, body: bytes | str) -> str:
    """What a service answered when its body is not JSON: the status and the first bytes."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    shown = "".join(c if c.isprintable() else " " for c in text[:60]).strip()
    return f"HTTP {status}, not JSON: {shown + ('…' if len(text) > 60 else '')!r}"


def _strip_userinfo(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//", url)


# ---------------------------------------------------------------------------- ARM and AKS

AKS_USER_ROLE = "Azure Kubernetes Service Cluster User Role"
AKS_ADMIN_ROLE = "Azure Kubernetes Service Cluster Admin Role"


def aks_forbidden(
    *,
    cluster: str,
    cluster_id: str,
    action: str,
    admin: bool,
    client_id: str,
    object_id: str,
    arm_said: str,
) -> Diagnosis:
    """ARM's 403 AuthorizationFailed for listClusterUserCredential/listClusterAdminCredential."""
    role = AKS_ADMIN_ROLE if admin else AKS_USER_ROLE
    kind = "admin" if admin else "user"
    also = (
        ""
        if admin
        else (
            "\n\nThe role only lets the job download the kubeconfig; what it may do inside the "
            "cluster is Kubernetes RBAC (a RoleBinding for this object id) or, on clusters "
            "with Azure RBAC, an `Azure Kubernetes Service RBAC ...` role."
        )
    )
    return Diagnosis(
        kind="arm-aks-forbidden",
        what=f"ARM refused the {kind} credentials of AKS cluster {cluster} to this job's "
        "identity (403 AuthorizationFailed).",
        cause=(
            f"the identity (client id {client_id}, object id {object_id}) has no role "
            f"granting {action} on the cluster; {role!r} (or Contributor/Owner) does."
        ),
        fix=(
            f'Grant it "{role}" on the cluster:\n\n'
            f'```sh\naz role assignment create --role "{role}" '
            f"--assignee-object-id {object_id} --assignee-principal-type ServicePrincipal "
            f"--scope {cluster_id}\n```" + also
        ),
        details=[
            ("client id", client_id),
            ("object id", object_id),
            ("action", action),
            ("scope", cluster_id),
            ("ARM said", arm_said),
        ],
    )


def aks_not_found(
    *, code: str, subscription: str, resource_group: str, cluster: str, arm_said: str
) -> Diagnosis:
    """ARM's 404 for the cluster: which of subscription, resource group or cluster is missing."""
    details = [
        ("subscription-id", subscription),
        ("aks-resource-group", resource_group),
        ("aks-cluster", cluster),
        ("ARM said", arm_said),
    ]
    if code == "SubscriptionNotFound":
        return Diagnosis(
            kind="arm-subscription-not-found",
            what=f"ARM knows no subscription {subscription} (404 SubscriptionNotFound).",
            cause=(
                "subscription-id (or AZURE_SUBSCRIPTION_ID) is mistyped, or the subscription "
                "belongs to another tenant than tenant-id."
            ),
            fix=(
                "Use the subscription that holds the cluster, in the app's tenant:\n\n"
                '```sh\naz account list --query "[].{name:name, id:id, tenantId:tenantId}" '
                "-o table\n```"
            ),
            details=details,
        )
    if code == "ResourceGroupNotFound":
        return Diagnosis(
            kind="arm-resource-group-not-found",
            what=f"Subscription {subscription} has no resource group {resource_group!r} "
            "(404 ResourceGroupNotFound).",
            cause=(
                "aks-resource-group is misspelt, or the group is in another subscription "
                "(check subscription-id)."
            ),
            fix=(
                "Find the cluster's resource group and subscription:\n\n"
                f'```sh\naz aks list --subscription {subscription} --query "[].{{name:name, '
                'resourceGroup:resourceGroup}" -o table\n```'
            ),
            details=details,
        )
    return Diagnosis(
        kind="arm-aks-not-found",
        what=f"Resource group {resource_group} has no AKS cluster {cluster!r} "
        f"(404 {code or 'NotFound'}).",
        cause=(
            "aks-cluster is misspelt, the cluster is in another resource group or "
            "subscription, or it was deleted."
        ),
        fix=(
            "List the clusters the job's identity can see and set aks-cluster and "
            "aks-resource-group to one of them:\n\n"
            f'```sh\naz aks list --subscription {subscription} --query "[].{{name:name, '
            'resourceGroup:resourceGroup}" -o table\n```'
        ),
        details=details,
    )


def arm_failed(
    *,
    status: int,
    code: str,
    arm_said: str,
    action: str,
    cluster: str,
    tenant_id: str | None,
    correlation_id: str | None,
) -> Diagnosis:
    """Any other ARM answer to the credential request (401, 429 and 5xx after retries, ...)."""
    details = [("ARM said", arm_said)] if arm_said else []
    if correlation_id:
        details.append(("correlation id", correlation_id))
    label = f"{status} {code}".strip()
    if status == 401:
        return Diagnosis(
            kind="arm-token-refused",
            what=f"ARM refused the job's token for {action} on AKS cluster {cluster} ({label}).",
            cause=(
                f"the subscription belongs to another tenant than tenant-id ({tenant_id or '?'})."
                if code == "InvalidAuthenticationTokenTenant"
                else "ARM did not take the token: it is for another cloud's ARM (set cloud), "
                "for another tenant, or it expired."
            ),
            fix=(
                "Set tenant-id to the tenant of the cluster's subscription "
                "(`az account show --subscription <id> --query tenantId`) and, for a sovereign "
                "cloud, set cloud."
            ),
            details=details,
        )
    if status == 429 or status >= 500:
        return Diagnosis(
            kind="arm-transient",
            what=f"ARM answered {action} on AKS cluster {cluster} with HTTP {label}, "
            "after retries.",
            cause="ARM or the AKS resource provider is throttling or failing.",
            fix=(
                "Rerun the job; if it persists, check https://azure.status.microsoft and "
                "quote the correlation id to Azure support."
            ),
            details=details,
        )
    return Diagnosis(
        kind="arm-failed",
        what=f"ARM answered {action} on AKS cluster {cluster} with HTTP {label}.",
        cause="see what ARM said below.",
        fix="Check aks-cluster, aks-resource-group and subscription-id, then rerun the job.",
        details=details,
    )


def kubeconfig_unreadable(*, cluster: str, problem: str) -> Diagnosis:
    return Diagnosis(
        kind="arm-kubeconfig-unreadable",
        what=f"ARM's kubeconfig for AKS cluster {cluster} could not be read.",
        cause=problem,
        fix="Rerun the job; if it persists, report it with the ARM correlation id.",
    )


# What `kubeconfig_unreadable` says was wrong with ARM's answer.
KUBECONFIG_NOT_BASE64 = "ARM's answer holds no base64 kubeconfig under kubeconfigs[0].value."
KUBECONFIG_NOT_YAML = "the kubeconfig ARM returned is not YAML."


def exec_user_kept(user: object, command: object) -> str:
    """Warning: a kubeconfig user runs an exec plugin azpytest leaves in place."""
    return (
        f"kubeconfig user {user!r} runs {command!r}, which azpytest does not replace: it must "
        "be installed where kubectl runs"
    )


# ---------------------------------------------------------------------------- kube-token

# Each line kube-token and the kubelogin stand-in write on stderr (which kubectl shows)
# starts with the tool's name.
KUBE_TOKEN_PREFIX = "azpytest kube-token: "
KUBELOGIN_PREFIX = "kubelogin (azpytest stand-in): "


def kube_token_install_hint(python: str) -> str:
    """What kubectl shows when it cannot start the kubeconfig's `azpytest kube-token` exec."""
    return (
        f"azpytest kube-token runs with {python}, the Python that ran `azpytest prepare`: "
        "run kubectl in the same job, after that step."
    )


def tool_error(prefix: str, problem: object) -> str:
    """One error line of kube-token or the kubelogin stand-in (bad input, a flag)."""
    return f"{prefix}error: {problem}"


def tool_crashed(prefix: str, exc: BaseException) -> str:
    """An unexpected exception, told in one line: a plugin under kubectl shows no traceback."""
    return f"{prefix}error: {type(exc).__name__}: {exc}"


def tool_diagnosis(prefix: str, diagnosis: Diagnosis) -> str:
    return prefix + diagnosis.text()


def kubelogin_get_token_error(problem: object) -> str:
    return tool_error(KUBELOGIN_PREFIX, f"get-token: {problem}")


def kubelogin_unsupported(command: str) -> str:
    shown = command or "(no subcommand)"
    return tool_error(
        KUBELOGIN_PREFIX,
        f"{shown} is not supported: this is azpytest's stand-in for kubelogin, which answers "
        "get-token and convert-kubeconfig only",
    )


KUBELOGIN_NOTHING_TO_CONVERT = (
    f"{KUBELOGIN_PREFIX}convert-kubeconfig: nothing to convert; the kubeconfig's "
    "`kubelogin get-token` exec already gets the job's token"
)


# ---------------------------------------------------------------------------- the test run

NO_TESTS_TITLE = "azpytest run: no tests collected"


def no_tests_collected(tests: Sequence[str], markers: str | None) -> str:
    """pytest exited 5: the selection (and marker expression) matched no test."""
    selection = " ".join(tests) or "(the default selection)"
    return (
        f"pytest collected no tests for {selection}"
        + (f" with -m {markers!r}" if markers else "")
        + ". A filter that matches nothing would pass as green; fix the tests/markers "
        "inputs, or set allow-no-tests: true if an empty run is expected."
    )


def cannot_run(command: str, reason: str | None) -> str:
    """`azpytest exec` could not start the command (not found, not executable)."""
    return f"azpytest exec: error: cannot run {command!r}: {reason}"


# ---------------------------------------------------------------------------- the plugin's fixtures


def unavailable(what: str, fix: str) -> str:
    """Why a fixture cannot work here and the fix, in one line (a skip, or a failure in CI)."""
    return f"azpytest: {what}; {fix}"


def failing_in_ci(reason: str) -> str:
    return f"{reason} (failing rather than skipping because CI=true)"


def not_collected(name: str, exc: BaseException) -> str:
    """The artifact written in place of one a failed test asked to keep but could not be read."""
    return f"could not collect {name}: {exc}"


def fixture_failed(problem: str) -> str:
    """A fixture's one-line failure (a bad plugin variable, a secret not prepared)."""
    return f"azpytest: {problem}"


def no_identity(problem: object) -> str:
    return unavailable(
        f"no Azure identity configured ({problem})",
        "set AZURE_TENANT_ID and AZURE_CLIENT_ID, or run `azpytest prepare` first",
    )


NO_SECRETS_PREPARED = unavailable(
    "no Key Vault secrets were prepared", "run `azpytest prepare` with key-vault and secrets set"
)


def secret_not_prepared(secret: str, prepared: Iterable[str]) -> str:
    return (
        f"secret {secret!r} was not prepared; add it to the secrets input "
        f"(prepared: {', '.join(sorted(prepared)) or 'none'})"
    )


def secret_variable_unset(secret: str, variable: str) -> str:
    return f"secret {secret!r} was prepared into {variable}, which is not set here"


NO_KUBECONFIG = unavailable(
    "no AKS kubeconfig was prepared",
    "set aks-resource-group and aks-cluster for `azpytest prepare`",
)


def cluster_refused(status: object, reason: object, plugin_said: str | None) -> str:
    """The API server answered the job's identity with an error (401 when no token went)."""
    return f"azpytest: the AKS cluster refused the job's identity: HTTP {status} {reason}" + (
        f"\n{plugin_said}" if plugin_said else ""
    )


def cluster_unavailable(host: str, said: str) -> str:
    """The API server kept answering 429/5xx (or dropping the connection) until the
    deadline: it is overloaded or restarting, not refusing the identity."""
    return (
        f"azpytest: the AKS API server ({host}) did not answer usably: {said}. It is "
        "throttling, overloaded or restarting, not refusing the job's identity; rerun, or "
        "give it longer with AZPYTEST_TIMEOUT (seconds; default 40)"
    )


def cluster_unreachable(exc: BaseException) -> str:
    return f"azpytest: the AKS cluster is not reachable: {exc}"


def exec_plugin_not_run(command: object, exc: BaseException) -> str:
    return f"the credential plugin {command!r} could not run: {exc}"


NO_CONNECTIONS = unavailable(
    "no connections were prepared (AZPYTEST_CONNECTIONS is not set)",
    "set the profiles input of `azpytest prepare`",
)


def connections_unreadable(path: str, exc: BaseException) -> str:
    return f"azpytest: cannot read {path}: {exc}"


def name_the_connection(kind: str, names: Iterable[str]) -> str:
    return (
        f"azpytest: name the {kind} connection to use: one of {', '.join(sorted(names)) or 'none'}"
    )


def no_such_connection(kind: str, name: str, names: Iterable[str]) -> str:
    return (
        f"azpytest: no {kind} connection named {name!r} (prepared: "
        f"{', '.join(sorted(names)) or 'none'})"
    )


NO_PYODBC = (
    "azpytest: azure_sql_connection needs pyodbc and the Microsoft ODBC Driver "
    "18 for SQL Server: pip install pyodbc; apt-get install msodbcsql18"
)
NO_ODBC_DRIVER = (
    "azpytest: no SQL Server ODBC driver installed: apt-get install msodbcsql18 "
    "(https://learn.microsoft.com/sql/connect/odbc/linux-mac/)"
)

# connections.yaml at use time (profiles.ConnectionsError).


def entra_password(connection: str, scope: str | None) -> str:
    return (
        f"connection {connection!r} uses auth: entra: its password is an access token for {scope}"
    )


def connection_variable_unset(
    connection: str, field: str, variable: str, secret: str | None
) -> str:
    source = f" (Key Vault secret {secret!r})" if secret else ""
    return (
        f"connection {connection!r}: {variable} is not set: it holds the {field}{source}; run "
        "`azpytest prepare` with the profiles input, or load the environment it wrote"
    )


def connections_not_yaml(path: object) -> str:
    return f"{path} is not valid YAML; rerun `azpytest prepare`"


def connections_no_mapping(path: object) -> str:
    return f"{path} has no connections mapping; rerun `azpytest prepare`"


def connection_no_kind(connection: str, kinds: Iterable[str]) -> str:
    return f"connection {connection!r}: no kind ({' or '.join(kinds)})"


def connection_port_not_number(connection: str, port: str) -> str:
    return f"connection {connection!r}: the port {port!r} is not a number"


def connection_needs_host(connection: str) -> str:
    return f"connection {connection!r}: host and database are required"


NO_DBT_PROJECT = unavailable(
    "no dbt project configured", "set azpytest_dbt_project in pytest.ini or AZPYTEST_DBT_PROJECT"
)
NO_DBT_PROFILE = unavailable(
    "no dbt profile was prepared (DBT_PROFILES_DIR is not set)",
    "add a dbt section to the profiles input of `azpytest prepare`",
)
DBT_NOT_INSTALLED = (
    "dbt is not installed here: install dbt-core with your adapter "
    "(pip install dbt-postgres, dbt-sqlserver or dbt-fabric)"
)


def dbt_failed(args: Sequence[str], returncode: int, said: str) -> str:
    """A dbt command the test ran failed: dbt's own error lines (or its output's tail)."""
    return f"dbt {' '.join(args)} failed (exit {returncode}):\n{said}"


# ---------------------------------------------------------------------------- the token broker

BROKER_TITLE = "azpytest token broker"


def broker_no_token(resource: str, diagnosis: Diagnosis) -> str:
    """Entra (or the local login) refused: what the SDK's exception shows, with the fix."""
    return f"azpytest token broker: no token for resource {resource}. {diagnosis.text()}"


def broker_token_failed(resource: str, exc: BaseException) -> str:
    return f"azpytest token broker: no token for resource {resource}: {type(exc).__name__}: {exc}"


def broker_refusal_warning(resource: str, diagnosis: Diagnosis) -> tuple[str, str]:
    """The job log's warning for a refusal: (message, title)."""
    return f"resource {resource}: {diagnosis.text()}", f"{BROKER_TITLE}: {diagnosis.what}"


def broker_no_endpoint(path: str, endpoint: str) -> str:
    return f"azpytest token broker: no endpoint {path}; use {endpoint}"


def broker_use_get(endpoint: str) -> str:
    return f"azpytest token broker: use GET {endpoint}"


def broker_bad_header(name: str, *, sent: bool) -> str:
    """The request lacks the header `name` (or sent a wrong value)."""
    return (
        f"azpytest token broker: the request has {'a wrong' if sent else 'no'} {name} header. "
        f"Only the command azpytest started may ask for tokens: send {name} with the value "
        "of its IDENTITY_HEADER variable."
    )


def broker_bad_api_version(asked: str | None, supported: str) -> str:
    return (
        f"azpytest token broker: api-version {asked!r} is not supported; it speaks the "
        f"App Service protocol, api-version={supported}."
    )


BROKER_NO_RESOURCE = (
    "azpytest token broker: the request names no resource "
    "(resource=https://vault.azure.net, for example)."
)


def broker_other_identity(client_id: str | None, asked: str) -> str:
    """The request names another managed identity (`asked`: `client_id=...`, ...). The
    message starts as Azure's own does, which SDKs recognise."""
    serves = client_id or "the identity azpytest logged in with"
    return (
        "Unable to load the proper Managed Identity. azpytest token broker: it serves one "
        f"identity, {serves}, and the request asks for {asked}. Leave AZURE_CLIENT_ID as "
        "azpytest set it, or pass no client_id/object_id."
    )


def broker_removed_variables(names: Sequence[str]) -> str:
    return (
        f"{', '.join(names)} removed from the command's environment: with them its "
        "DefaultAzureCredential would not use the token broker (set broker: false to keep "
        "them)."
    )


# ---------------------------------------------------------------------------- report

REPORT_TITLE = "azpytest report"


def failure_annotation(
    message: str, explanation: Sequence[str], notes: Sequence[str], kind: str, lines: int
) -> str:
    """A failed test's annotation: its message, then pytest's explanation (at most `lines`
    in all), then each note; the failure's kind when there is nothing else."""
    said = [message] if message else []
    said += [line for line in explanation if line not in said]
    said = said[:lines]
    said += [f"also: {note}" for note in notes]
    return clip_annotation("\n".join(said) or kind)


def more_failures(more: int, failing: int, table_rows: int, named: int, failed: int) -> str:
    """The notice after the annotations: where the failures not annotated are."""
    if failing <= table_rows:
        are = "failures are" if more > 1 else "failure is"
        return f"{more} more {are} listed in the job summary"
    says = "every one" if named >= failed else f"the first {named} of {failed}"
    return (
        f"{more} more failures: the job summary lists the first {table_rows} failures "
        f"and the step's failed-tests output names {says}"
    )


ANNOTATION_LIMIT = 4096  # bytes of an annotation's message the runner keeps
_CLIPPED = "… (clipped: the job summary holds the whole failure)"


def clip_annotation(text: str) -> str:
    """An annotation's message within what the runner keeps, saying where the rest is."""
    data = text.encode("utf-8")
    if len(data) <= ANNOTATION_LIMIT:
        return text
    room = ANNOTATION_LIMIT - len(_CLIPPED.encode("utf-8"))
    return data[:room].decode("utf-8", errors="ignore") + _CLIPPED


def all_skipped(count: int, top_reason: str) -> str:
    """Every test was skipped: nothing was tested, which must not pass as green."""
    return (
        f"All {count} tests were skipped, so nothing was tested (the most frequent reason: "
        f"{top_reason}). The job summary lists every reason. Fix what skips them, or set "
        "allow-all-skipped: true if a run with every test skipped is expected."
    )


def failed_tests_capped(named: int, failed: int) -> str:
    return (
        f"failed-tests names the first {named} of {failed} failed tests: GitHub caps a "
        "step output's size. To rerun every one, pass the JUnit files to rerun-failed-from: "
        "it reads them all from there"
    )


def attempts_superseded(superseded: list[tuple[str, int, int]]) -> str:
    """The merge kept the latest attempt of shards that a re-run of failed jobs ran again."""
    shards = ", ".join(
        f"{name} (attempt {kept}; {count} earlier left out)" for name, kept, count in superseded
    )
    return (
        f"Re-run jobs: the results of the latest attempt of each shard are merged, the earlier "
        f"attempts' left out: {shards}."
    )


def nothing_to_rerun(earlier: str) -> str:
    return (
        f"Nothing to rerun: {earlier} lists no failed test, so no test ran; the earlier run's "
        "results stand."
    )


def empty_shard(which: str) -> str:
    number, _, count = which.partition("/")
    return (
        f"Shard {number} of {count} got no test: the suite (or its rerun) has fewer tests "
        "than shards. It passes; the merge of all shards judges the whole run."
    )


def no_test_ran(files: int) -> str:
    where = "the JUnit file holds" if files == 1 else f"the {files} JUnit files hold"
    return (
        f"No test ran: {where} no test case. A filter that matches nothing would pass as "
        "green; fix the tests/markers inputs, or set allow-no-tests: true if an empty run is "
        "expected."
    )


def module_not_installed(module: str) -> str:
    return (
        f"`{module}` is not installed where pytest ran: install the tests' packages into the "
        "job's Python in an earlier step (actions/setup-python, then pip install -r "
        "requirements-test.txt; azpytest's environment sees them), or name them in the "
        "action's `requirements` input."
    )


# ---------------------------------------------------------------------------- dbt (issue 18)


def dbt_variable_unset(
    profile: str, variable: str, connection: str | None, field: str | None, secret: str | None
) -> str:
    """A variable the written dbt profile reads is unset: dbt would send its literal text."""
    if field == "token":
        holds = f"the Entra access token of connection {connection!r}"
        how = (
            "run dbt as `azpytest exec -- dbt ...` (it fetches a fresh token for each run) "
            "or through the dbt fixture"
        )
    else:
        source = f" (Key Vault secret {secret!r})" if secret else ""
        holds = f"the {field} of connection {connection!r}{source}" if field else "a value"
        how = (
            "run dbt in a step after `azpytest prepare` with the profiles input (it exports "
            "the variable), or outside Actions through `azpytest exec -- dbt ...`"
        )
    return f"{profile} reads {variable}, which is not set: it holds {holds}; {how}"


def profiles_secret_not_found(
    diagnosis: Diagnosis, *, vault: str, secret: str, where: str
) -> Diagnosis:
    """`secret_not_found` of a secret that the profiles input names (at `where`)."""
    close = diagnosis.cause.partition("deleted.")[2]  # " Close names that exist: ...", or ""
    return Diagnosis(
        kind="profiles-secret-not-found",
        what=f"Key Vault {vault} has no secret named {secret!r} (profiles: {where}).",
        cause=f"the name in the profiles input is misspelt, or the secret was deleted.{close}",
        fix=(
            f"Correct `{where}: {{secret: ...}}` in `profiles`, or create it: `az keyvault "
            f"secret set --vault-name {vault} --name {secret} --file <value-file>`."
        ),
    )


def secret_whitespace(secret: str, env: str) -> str:
    return (
        f"Key Vault secret {secret!r} ({env}) has whitespace at its ends (a trailing newline?), "
        "kept as it is: a host name or password with it fails; remove it in Key Vault "
        "(`az keyvault secret set --value`) or set strip-secret-whitespace: true"
    )


def secret_whitespace_stripped(secret: str, env: str) -> str:
    return (
        f"azpytest: Key Vault secret {secret!r} ({env}): whitespace at its ends removed "
        "(strip-secret-whitespace)"
    )


def dotenv_withheld(env_file: object, names: Sequence[str]) -> str:
    """The `.env` variables that would change the tests' credential chain, not loaded in CI
    (names only: a value is never shown)."""
    return (
        f"{env_file} sets {', '.join(names)}: not loaded in CI, where the tests' identity is the "
        "job's (GitHub OIDC); with them DefaultAzureCredential would try another credential "
        "first (an empty AZURE_CLIENT_SECRET fails). Local runs still load them."
    )


def suite_loaded_credential_variables(names: Sequence[str]) -> str:
    """Credential-chain variables the suite put in its own environment (its .env), removed
    under the token broker in CI (names only: a value is never shown)."""
    return (
        f"azpytest: warning: {', '.join(names)} removed from the tests' environment, where the "
        "suite put them (a .env it loads?): in CI the tests' identity is the job's, through the "
        "token broker, and with them DefaultAzureCredential would try another credential first "
        "(an empty AZURE_CLIENT_SECRET fails). Set broker: false to keep them."
    )


def no_kubelet_identity(cluster: object) -> Diagnosis:
    """ARM's managed cluster has no kubelet identity (a cluster on a service principal)."""
    return Diagnosis(
        kind="aks-no-kubelet-identity",
        what=f"ARM: the AKS cluster {cluster} has no kubelet identity.",
        cause="its properties.identityProfile.kubeletidentity is empty: the cluster runs on a "
        "service principal, so real_aks_cluster['managed_identity_client_id'] has no value.",
        fix="Use a cluster with a managed identity, or leave that key unused.",
    )


# Azure SQL (azuresql.py): the driver, and the refusals of a login with the job's token.


def sql_unknown_driver(wanted: str, drivers: Sequence[str]) -> Diagnosis:
    return Diagnosis(
        kind="sql-driver-unknown",
        what=f"azure_sql_connection: unknown driver {wanted!r}.",
        cause=f"the driver is one of {', '.join(drivers)}.",
        fix=f"Pass driver={drivers[0]!r} (the default) or driver={drivers[1]!r}.",
    )


LIBLTDL_MISSING = (
    "mssql-python cannot load its ODBC driver: libltdl.so.7 is missing; install it with "
    "`sudo apt-get install -y libltdl7` (Debian, Ubuntu)"
)


PYODBC_NO_SQL_DRIVER = (
    "pyodbc finds no SQL Server ODBC driver (Microsoft's msodbcsql18 package installs one)"
)


def sql_driver_not_loaded(driver: str, problem: str) -> str:
    """One line: why a SQL driver did not load, and the fix."""
    if driver == "mssql-python":
        return (
            f"mssql-python is not installed ({problem}); add `mssql-python` (or "
            "`azpytest[azure-sql]`) to the tests' requirements"
        )
    return f"{driver} is not installed ({problem})"


def sql_no_driver(problems: Sequence[str]) -> str:
    """One line (a skip reason locally, a failure in CI): why no driver loaded, each fix."""
    return "azpytest: azure_sql_connection: " + "; ".join(problems)


def _principal(claims: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("client id (appid)", str(claims.get("appid") or claims.get("azp") or "?")),
        ("object id (oid)", str(claims.get("oid") or "?")),
    ]
    if claims.get("app_displayname"):
        rows.append(("display name", str(claims["app_displayname"])))
    if claims.get("tid"):
        rows.append(("tenant (tid)", str(claims["tid"])))
    return rows


def sql_not_a_user(host: str, database: str, claims: Mapping[str, Any]) -> Diagnosis:
    name = str(claims.get("app_displayname") or "<the app's display name>")
    return Diagnosis(
        kind="sql-not-a-user",
        what=(
            f"Azure SQL {host} refused the login to database {database!r}: error 18456, "
            "Login failed for user '<token-identified principal>'."
        ),
        cause=(
            "the token is valid but its identity is not a user of the database (Azure SQL "
            "only lets in Entra principals created in the database)."
        ),
        details=[("server", host), ("database", database), *_principal(claims)],
        fix=(
            f"Connected to {database!r} as the server's Microsoft Entra admin, run:\n\n"
            f"```sql\nCREATE USER [{name}] FROM EXTERNAL PROVIDER;\n"
            f"ALTER ROLE db_datareader ADD MEMBER [{name}];\n```\n\n"
            "(add db_datawriter or db_ddladmin as the tests need)."
        ),
    )


def sql_firewall(host: str, address: str, server: str) -> Diagnosis:
    return Diagnosis(
        kind="sql-firewall",
        what=(
            f"Azure SQL {host} refused the connection: error 40615, the client with IP address "
            f"{address} is not allowed to access the server."
        ),
        cause=f"no firewall rule of server {server!r} covers this runner's address {address}.",
        details=[("server", host), ("runner address", address)],
        fix=(
            "Allow the address (Owner or SQL Server Contributor on the server):\n\n"
            f"```sh\naz sql server firewall-rule create --resource-group <resource-group> "
            f"--server {server} --name azpytest-runner --start-ip-address {address} "
            f"--end-ip-address {address}\n```\n\n"
            "GitHub-hosted runners get a different address for every job: a fixed rule "
            "works only for a self-hosted runner (or a larger runner with static IP "
            "addresses); otherwise create the rule in the job before the tests and delete it "
            "after them (`if: always()`), or reach the server through a private endpoint."
        ),
    )


def sql_token_refused(host: str, asked: str, expected: str, claims: Mapping[str, Any]) -> Diagnosis:
    audience = str(claims.get("aud") or "?")
    return Diagnosis(
        kind="sql-token-audience",
        what=(
            f"Azure SQL {host} refused the token: error 18456, Incorrect or invalid token "
            f"(the token is for {audience})."
        ),
        cause=(
            f"the token was asked for scope {asked}, but this server takes tokens for "
            f"{expected} (the database resource of its cloud, in its own tenant)."
            if asked != expected
            else "the server is in another tenant or cloud than the token's."
        ),
        details=[("scope asked", asked), ("scope expected", expected), *_principal(claims)],
        fix=(
            "Set the action's `cloud` input to the server's cloud (AzureUSGovernment for "
            "*.database.usgovcloudapi.net, AzureChinaCloud for *.database.chinacloudapi.cn), "
            f"or give the connection `scope: {expected}` in the profiles input."
        ),
    )


def sql_token_expired(host: str, claims: Mapping[str, Any]) -> Diagnosis:
    return Diagnosis(
        kind="sql-token-expired",
        what=f"Azure SQL {host} refused the token: error 18456, Token is expired.",
        cause=(
            "the token had expired when the login reached the server (a token kept from an "
            "earlier connection, or a clock far off)."
        ),
        details=_principal(claims),
        fix="Open connections with azure_sql_connection(), which fetches a token for each one.",
    )


def sql_database_unavailable(host: str, database: str) -> Diagnosis:
    return Diagnosis(
        kind="sql-database-unavailable",
        what=f"Azure SQL {host}: error 40613, database {database!r} is not currently available.",
        cause=(
            "the database is paused (serverless auto-pause), being scaled, failed over or under "
            "maintenance."
        ),
        fix="Retry the connection after a minute; a serverless database resumes on the retry.",
        transient=True,
    )


def sql_certificate_untrusted(host: str, reason: str, ca_file: str | None) -> Diagnosis:
    return Diagnosis(
        kind="sql-certificate-untrusted",
        what=(
            f"Azure SQL {host}: the driver did not trust the server's TLS certificate "
            f"(certificate verify failed: {reason})."
        ),
        cause=(
            "ODBC Driver 18 checks the server's certificate against OpenSSL's trusted roots "
            "(SSL_CERT_FILE, else the system's): a proxy that intercepts TLS, a CA missing from "
            "that store, or a host name the certificate does not name (use the server's "
            "<name>.database.windows.net name, not an IP address)."
        ),
        details=[("server", host), ("SSL_CERT_FILE", ca_file or "unset")],
        fix=(
            "Add the CA to the system's trusted roots (`update-ca-certificates`) or point "
            "SSL_CERT_FILE at a bundle that holds it. Do not set TrustServerCertificate=yes: it "
            "accepts any server, and the job's token with it."
        ),
    )
