"""AKS kubeconfig without az or kubelogin, and `azpytest kube-token`, the exec plugin it names.

`write_kubeconfig` asks ARM for the cluster's kubeconfig (listClusterUserCredential, or
listClusterAdminCredential with aks-admin) and replaces kubelogin's exec user with an exec of
this interpreter running `azpytest kube-token`, which prints an `ExecCredential` with a fresh
Entra token for the AKS server app each time kubectl or the kubernetes client asks. No token
is ever written into the file; a client-certificate user (a cluster without Entra, or the
admin credential) is kept as it is, its key masked before anything else is printed.

`kube-token` runs under kubectl: its stdout is the ExecCredential and nothing else, its
failures are one diagnosis on stderr (which kubectl shows) and exit 1.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import logging
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
import yaml
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from azpytest import errors, http, identity, kubetoken
from azpytest.clouds import AKS_SERVER_ID, DEFAULT_AUDIENCE
from azpytest.github import Workflow
from azpytest.identity import Identity
from azpytest.inputs import INPUTS
from azpytest.kubetoken import EXEC_V1, EXEC_V1BETA1, exec_api_version
from azpytest.rundir import BIN, ENV_VARIABLE, KUBECONFIG, RunDir
from azpytest.settings import InputError, Settings
from azpytest.settings import load as load_settings

API_VERSION = "2025-10-01"
# User fields that hold a credential: masked (with their base64 and decoded forms) at once.
_SECRET_FIELDS = ("client-key-data", "client-certificate-data", "token", "password")


# ---------------------------------------------------------------------------- kubeconfig


def write_kubeconfig(settings: Settings, who: Identity, workflow: Workflow) -> Path:
    """The cluster's kubeconfig, kubelogin replaced by `azpytest kube-token`, written 0600."""
    raw = request_kubeconfig(settings, who, workflow)
    mask_credentials(raw, workflow)  # before anything else can print a key
    kubeconfig, notes = replace_kubelogin(raw, settings)
    for note in notes:
        workflow.warning(note)
    path = settings.rundir.write_private(
        KUBECONFIG, yaml.safe_dump(kubeconfig, default_flow_style=False, sort_keys=False)
    )
    kind = "admin" if settings.aks_admin else "user"
    users = ", ".join(_describe(u) for u in kubeconfig.get("users") or [])
    print(
        f"azpytest: kubeconfig of AKS cluster {settings.aks_cluster} ({kind} credential): "
        f"{path} (mode 0600); {users}",
        flush=True,
    )
    return path


def cluster_id(settings: Settings) -> str:
    return (
        f"/subscriptions/{settings.subscription_id}/resourceGroups/{settings.aks_resource_group}"
        f"/providers/Microsoft.ContainerService/managedClusters/{settings.aks_cluster}"
    )


def request_kubeconfig(settings: Settings, who: Identity, workflow: Workflow) -> dict[str, Any]:
    """POST list*Credential with the ARM token; ARM's failures become diagnoses. A transient
    answer (429, 5xx, a reset, a timeout, a 200 that is not JSON) is asked again until the
    deadline (list*Credential changes nothing: retrying the POST is safe)."""
    assert settings.subscription_id and settings.aks_resource_group and settings.aks_cluster
    action = "listClusterAdminCredential" if settings.aks_admin else "listClusterUserCredential"
    params = {"api-version": API_VERSION}
    if not settings.aks_admin:
        params["format"] = "exec"  # kubelogin's exec, not the retired azure auth-provider
    answer, body = _arm_call("POST", f"/{action}", params, settings, who, workflow)
    if answer.status_code != 200:
        raise _arm_failure(answer, settings, who, action)
    try:
        entries = body["kubeconfigs"]
        value = entries[0]["value"]
        text = base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error, UnicodeDecodeError):
        raise errors.kubeconfig_unreadable(
            cluster=settings.aks_cluster, problem=errors.KUBECONFIG_NOT_BASE64
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        # Mask first: a kubeconfig that is not YAML may still hold a key.
        workflow.mask(text, encoded=True)
        raise errors.kubeconfig_unreadable(
            cluster=settings.aks_cluster, problem=errors.KUBECONFIG_NOT_YAML
        )
    return data


def _arm_call(
    method: str,
    suffix: str,
    params: dict[str, str],
    settings: Settings,
    who: Identity,
    workflow: Workflow,
) -> tuple[requests.Response, Any]:
    """One ARM request on the cluster (its id + `suffix`) with the job's ARM token, asked
    again on a transient answer until the deadline; the answer and its JSON (None unless
    200)."""
    url = f"{settings.cloud.arm_endpoint}{cluster_id(settings)}{suffix}"
    host = urllib.parse.urlsplit(settings.cloud.arm_endpoint).hostname or url
    timeouts = http.Timeouts(settings.timeout)
    token = who.get_token(settings.cloud.arm_scope).token  # masked, Entra refusals diagnosed

    def attempt(timeout: tuple[float, float]) -> tuple[requests.Response, Any]:
        try:
            answer = session.request(
                method,
                url,
                params=params,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                timeout=timeout,
            )
        except requests.RequestException as exc:
            transient = http.network_transient(exc, timeouts)
            if transient is None:
                raise errors.unreachable(host, str(exc), workflow.environ) from None
            raise transient from None
        status = answer.status_code
        if status == 429 or status >= 500:
            code = _arm_code(answer)
            raise http.Transient(
                f"HTTP {status}" + (f" {code}" if code else ""),
                retry_after=http.retry_after(answer.headers),
            )
        if status != 200:
            return answer, None
        try:
            return answer, answer.json()
        except ValueError:
            raise http.Transient(errors.not_json(status, answer.content)) from None

    with http.session(workflow.environ, timeouts=timeouts) as session:
        try:
            return http.retrying(attempt, timeouts)
        except http.GaveUp as gave_up:
            raise errors.service_unavailable(
                service=errors.ARM, host=host, said=gave_up.summary(), environ=workflow.environ
            ) from None


def kubelet_client_id(settings: Settings, who: Identity, workflow: Workflow) -> str:
    """The client id of the cluster's kubelet identity (its identityProfile, from ARM)."""
    answer, body = _arm_call("GET", "", {"api-version": API_VERSION}, settings, who, workflow)
    if answer.status_code != 200:
        raise _arm_failure(answer, settings, who, "read")
    try:
        return str(body["properties"]["identityProfile"]["kubeletidentity"]["clientId"])
    except (KeyError, TypeError):
        raise errors.no_kubelet_identity(settings.aks_cluster) from None


def _arm_code(answer: requests.Response) -> str:
    try:
        return str((answer.json().get("error") or {}).get("code") or "")
    except (ValueError, AttributeError):
        return ""


def _arm_failure(
    answer: requests.Response, settings: Settings, who: Identity, action: str
) -> errors.Diagnosis:
    try:
        error = answer.json().get("error") or {}
        code, message = str(error.get("code") or ""), str(error.get("message") or "")
    except (ValueError, AttributeError):
        code, message = "", answer.text.strip()[:300]
    assert settings.subscription_id and settings.aks_resource_group and settings.aks_cluster
    if answer.status_code == 403 and code == "AuthorizationFailed":
        # ARM names the caller itself; the token's claims say the same when ARM does not.
        named = re.search(r"client '([^']+)' with object id '([^']+)'", message)
        client_id = (
            who.principal.get("appid")
            or who.principal.get("azp")
            or (named.group(1) if named else None)
            or who.client_id
            or "?"
        )
        object_id = who.principal.get("oid") or (named.group(2) if named else "?")
        return errors.aks_forbidden(
            cluster=settings.aks_cluster,
            cluster_id=cluster_id(settings),
            action=f"Microsoft.ContainerService/managedClusters/{action}"
            + ("" if action == "read" else "/action"),
            admin=settings.aks_admin,
            client_id=client_id,
            object_id=object_id,
            arm_said=message,
        )
    if answer.status_code == 404 and code in (
        "ResourceNotFound",
        "ResourceGroupNotFound",
        "SubscriptionNotFound",
    ):
        return errors.aks_not_found(
            code=code,
            subscription=settings.subscription_id,
            resource_group=settings.aks_resource_group,
            cluster=settings.aks_cluster,
            arm_said=message,
        )
    return errors.arm_failed(
        status=answer.status_code,
        code=code,
        arm_said=message,
        action=action,
        cluster=settings.aks_cluster,
        tenant_id=settings.tenant_id,
        correlation_id=answer.headers.get("x-ms-correlation-request-id"),
    )


def mask_credentials(kubeconfig: Mapping[str, Any], workflow: Workflow) -> None:
    """Mask every credential a user of the kubeconfig holds: the value as written and, for
    the base64 `*-data` fields, the decoded PEM (each line) and its other encodings."""
    for entry in kubeconfig.get("users") or []:
        user = entry.get("user") if isinstance(entry, Mapping) else None
        if not isinstance(user, Mapping):
            continue
        for name in _SECRET_FIELDS:
            value = user.get(name)
            if not isinstance(value, str) or not value:
                continue
            workflow.mask(value, encoded=True)
            if name.endswith("-data"):
                try:
                    decoded = base64.b64decode(value, validate=False).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    continue
                workflow.mask(decoded, encoded=True)


def replace_kubelogin(
    kubeconfig: Mapping[str, Any], settings: Settings
) -> tuple[dict[str, Any], list[str]]:
    """The kubeconfig with each kubelogin (or legacy azure auth-provider) user replaced by an
    exec of `azpytest kube-token`; other users kept. Also returns notes for the user."""
    result = dict(kubeconfig)
    users: list[Any] = []
    notes: list[str] = []
    for entry in kubeconfig.get("users") or []:
        user = entry.get("user") if isinstance(entry, Mapping) else None
        if not isinstance(user, Mapping):
            users.append(entry)
            continue
        server_id = _entra_server_id(user)
        if server_id is not None:
            users.append({**entry, "user": kube_token_user(server_id, settings)})
            continue
        exec_ = user.get("exec")
        if isinstance(exec_, Mapping) and exec_.get("command"):
            notes.append(errors.exec_user_kept(entry.get("name"), exec_["command"]))
        users.append(entry)
    result["users"] = users
    return result, notes


def _entra_server_id(user: Mapping[str, Any]) -> str | None:
    """The AKS server app a kubelogin exec (or azure auth-provider) user asks a token for."""
    exec_ = user.get("exec")
    if isinstance(exec_, Mapping):
        command = str(exec_.get("command") or "")
        args = [str(a) for a in exec_.get("args") or []]
        name = command.replace("\\", "/").rsplit("/", 1)[-1].lower().removesuffix(".exe")
        if name == "kubelogin" or "get-token" in args:
            return _flag(args, "--server-id") or AKS_SERVER_ID
        return None
    provider = user.get("auth-provider")
    if isinstance(provider, Mapping) and provider.get("name") == "azure":
        config = provider.get("config") or {}
        return str(config.get("apiserver-id") or AKS_SERVER_ID)
    return None


def _flag(args: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def kube_token_user(server_id: str, settings: Settings) -> dict[str, Any]:
    """The exec user that runs `azpytest kube-token` with this interpreter: identifiers only,
    never a token or secret (in Actions every step has the OIDC request variables)."""
    # -P (3.11+): the working directory kubectl runs in is not put on sys.path, so a
    # `yaml.py` or `requests/` there cannot shadow the plugin's imports.
    isolate = ["-P"] if sys.version_info >= (3, 11) else []
    args = [*isolate, "-m", "azpytest", "kube-token", "--server-id", server_id]
    if settings.tenant_id:
        args += ["--tenant-id", settings.tenant_id]
    if settings.client_id:
        args += ["--client-id", settings.client_id]
    args += ["--cloud", settings.cloud.name]
    if settings.audience != DEFAULT_AUDIENCE:
        args += ["--audience", settings.audience]
    return {
        "exec": {
            "apiVersion": EXEC_V1,
            "command": os.path.abspath(sys.executable),
            "args": args,
            # The run folder, where invocations share a cached token (kubetoken).
            "env": [{"name": ENV_VARIABLE, "value": str(settings.run_dir)}],
            "interactiveMode": "Never",
            "provideClusterInfo": False,
            "installHint": errors.kube_token_install_hint(os.path.abspath(sys.executable)),
        }
    }


def _describe(entry: Any) -> str:
    user = entry.get("user") if isinstance(entry, Mapping) else None
    name = entry.get("name") if isinstance(entry, Mapping) else "?"
    if isinstance(user, Mapping) and isinstance(user.get("exec"), Mapping):
        args = [str(a) for a in user["exec"].get("args") or []]
        if "kube-token" in args:
            server_id = _flag(args, "--server-id")
            return f"user {name}: azpytest kube-token (Entra token for {server_id})"
        return f"user {name}: exec {user['exec'].get('command')}"
    if isinstance(user, Mapping) and "client-key-data" in user:
        return f"user {name}: client certificate (key masked)"
    return f"user {name}"


# ---------------------------------------------------------------------------- kube-token


class _BadFlags(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """kubelogin's flags: an error is raised, not printed with usage (argparse exits)."""

    def error(self, message: str) -> Any:
        raise _BadFlags(message)


# The inputs kube-token reads; the variables of every other input are not looked at, so a
# value only prepare uses cannot fail the plugin under kubectl.
_TOKEN_INPUTS = {"tenant-id", "client-id", "cloud", "audience", "env-file", "debug", "timeout"}


def token_main(server_id: str, flags: Mapping[str, str | None]) -> int:
    """`azpytest kube-token`: stdout is the ExecCredential and nothing else; a failure is a
    diagnosis on stderr and exit 1 (2 for bad input), never a traceback or a token."""
    try:
        api_version = exec_api_version(os.environ.get("KUBERNETES_EXEC_INFO"))
    except ValueError as exc:
        print(errors.tool_error(errors.KUBE_TOKEN_PREFIX, exc), file=sys.stderr, flush=True)
        return 2
    own = {name: flags.get(name) for name in _TOKEN_INPUTS}
    return _print_credential(errors.KUBE_TOKEN_PREFIX, server_id, own, api_version)


def _print_credential(
    prefix: str, server_id: str, flags: Mapping[str, str | None], api_version: str
) -> int:
    """Print the ExecCredential (the shared core of kube-token and the kubelogin stand-in):
    a good token from the run folder's cache, else a fresh one, cached for the invocations
    that follow. The cache's lock is held while Entra is asked, so concurrent kubectl calls
    make one request between them."""
    run_dir = kubetoken.cache_run_dir(os.environ)
    if run_dir is None:
        return _fetch_and_print(prefix, server_id, flags, api_version, None)
    key = kubetoken.cache_key(server_id, flags, os.environ)
    with kubetoken.locked(run_dir, key) as cache:
        held = cache.read(time.time()) if cache is not None else None
        if held is not None:
            kubetoken.seen(held.token)
            kubetoken.print_credential(api_version, held.token, held.expires_on)
            return 0
        return _fetch_and_print(prefix, server_id, flags, api_version, cache)


def _fetch_and_print(
    prefix: str,
    server_id: str,
    flags: Mapping[str, str | None],
    api_version: str,
    cache: kubetoken.Cache | None,
) -> int:
    """Get a token for the AKS server app from the job's credential and print it."""
    ignored = {
        variable
        for spec in INPUTS
        if spec.name not in _TOKEN_INPUTS
        for variable in (*spec.variables, spec.alias_variable)
        if variable
    }
    environ = {k: v for k, v in os.environ.items() if k not in ignored}
    try:
        loaded = load_settings(flags, environ)
    except InputError as exc:
        print(errors.tool_error(prefix, exc), file=sys.stderr, flush=True)
        return 2
    if not loaded.debug:
        # azure-identity logs each failure as a warning; the diagnosis below says it once.
        logging.getLogger("azure").addHandler(logging.NullHandler())
    # Under kubectl no workflow command may be sent (and stdout is kubectl's): the runner's
    # environment minus GITHUB_ACTIONS makes every Workflow call print nothing.
    workflow = Workflow({**os.environ, "GITHUB_ACTIONS": ""}, out=sys.stderr)
    started = time.time()
    try:
        who = identity.build(loaded, workflow)
        try:
            token = who.get_token(f"{server_id}/.default")
        finally:
            who.close()
    except errors.Diagnosis as diagnosis:
        print(errors.tool_diagnosis(prefix, diagnosis), file=sys.stderr, flush=True)
        return diagnosis.exit_code
    except Exception as exc:  # a plugin under kubectl must never show a traceback
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            host = loaded.cloud.authority_host
            unreachable = errors.unreachable(host, str(exc), os.environ)
            print(errors.tool_diagnosis(prefix, unreachable), file=sys.stderr)
        else:
            print(errors.tool_crashed(prefix, exc), file=sys.stderr, flush=True)
        return 1
    if cache is not None:
        cache.write(kubetoken.hold(token.token, token.expires_on, started))
    kubetoken.print_credential(api_version, token.token, token.expires_on)
    return 0


# ---------------------------------------------------------------------------- kubelogin


def kubelogin_main(argv: list[str] | None = None) -> int:
    """A stand-in for Azure's `kubelogin`, for kubeconfigs that name it (as ARM returns them):
    `get-token` answers from the job's renewing credential; `convert-kubeconfig` leaves the
    exec as it is (it already works); anything else says what this is and exits 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    if command in ("--version", "version", "-v"):
        from azpytest import __version__

        print(f"kubelogin stand-in from azpytest {__version__} (get-token, convert-kubeconfig)")
        return 0
    if command == "convert-kubeconfig":
        print(errors.KUBELOGIN_NOTHING_TO_CONVERT, file=sys.stderr)
        return 0
    if command != "get-token":
        print(errors.kubelogin_unsupported(command), file=sys.stderr)
        return 2
    parser = _Parser(prog="kubelogin get-token", add_help=False)
    parser.add_argument("--server-id")
    parser.add_argument("--tenant-id", "-t")
    parser.add_argument("--client-id")
    parser.add_argument("--environment", "-e")
    parser.add_argument("--login", "-l")
    parser.add_argument("--legacy", action="store_true")
    try:
        # Flags that only matter interactively (--client-secret, --token-cache-dir, ...)
        # are accepted and ignored: the job has one identity.
        options, _rest = parser.parse_known_args(args[1:])
        if not options.server_id:
            raise _BadFlags("--server-id is required")
        api_version = exec_api_version(os.environ.get("KUBERNETES_EXEC_INFO"), EXEC_V1BETA1)
    except (_BadFlags, ValueError) as exc:
        print(errors.kubelogin_get_token_error(exc), file=sys.stderr, flush=True)
        return 2
    flags = kubetoken.kubelogin_flags(options.tenant_id, options.environment, os.environ)
    return _print_credential(errors.KUBELOGIN_PREFIX, options.server_id, flags, api_version)


def real_kubelogin(path: str | None = None) -> str | None:
    """A kubelogin on PATH that is not our stand-in."""
    import shutil

    found = shutil.which("kubelogin", path=path)
    if found is None:
        return None
    try:
        head = Path(found).read_bytes()[:512]
    except OSError:
        return found
    return None if b"azpytest" in head else found


def install_kubelogin(run_dir: RunDir, mode: str, environ: Mapping[str, str]) -> Path | None:
    """Put the stand-in in `<run_dir>/bin` (to go first on the tests' PATH) unless a real
    kubelogin is found (`auto`) or `never`; the folder to prepend, or None."""
    if mode == "never" or (mode == "auto" and real_kubelogin(environ.get("PATH"))):
        return None
    folder = run_dir.private_folder(BIN)
    script = folder / "kubelogin"
    script.write_text(
        f"#!{sys.executable} -P\n"
        "# kubelogin stand-in written by azpytest (get-token from the job's credential)\n"
        "import sys\n"
        "from azpytest.__main__ import kubelogin\n"
        "sys.exit(kubelogin())\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return folder
