"""The prepared AKS cluster: its kubeconfig, a client, a namespace per test."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from azpytest import errors
from azpytest.plugin.artifacts import artifact_state, failed
from azpytest.plugin.common import prepared, setting, skip_or_fail

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, CoreV1Api, V1ObjectMeta

    from azpytest.identity import Identity
    from azpytest.settings import Settings


@pytest.fixture(scope="session")
def kubeconfig() -> Path:
    path = os.environ.get("KUBECONFIG") or prepared().get("kubeconfig")
    if not path or not Path(path).is_file():
        skip_or_fail(errors.NO_KUBECONFIG)
    return Path(path)


def _timeouts() -> tuple[float, float]:
    """(connect, read) for each request to the API server: the timeout policy of http.py."""
    from azpytest.http import Timeouts

    timeouts = Timeouts(float(setting("timeout") or 40))
    return timeouts.connect, timeouts.read


@pytest.fixture(scope="session")
def kube_client(kubeconfig: Path) -> Iterator[ApiClient]:
    """A ready `kubernetes.client.ApiClient` for the prepared cluster."""
    from kubernetes import client, config
    from urllib3.util.retry import Retry

    configuration = type.__call__(client.Configuration)  # not a copy of the default's
    # A dropped connection is tried again, a read that timed out is not: urllib3 would
    # otherwise wait out the read bound four times (the timeout policy of http.py).
    configuration.retries = Retry(total=3, read=0, status=0, raise_on_status=False)
    api = config.new_client_from_config(
        config_file=str(kubeconfig), client_configuration=configuration
    )
    yield api
    api.close()


def _exec_failure(kubeconfig: Path) -> str | None:
    """Run the kubeconfig's exec credential plugin once; its stderr if it fails."""
    import subprocess

    import yaml

    try:
        config = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
        context = next(
            c["context"] for c in config["contexts"] if c["name"] == config["current-context"]
        )
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        plugin = user["exec"]
    except (OSError, KeyError, StopIteration, TypeError, yaml.YAMLError):
        return None
    env = {**os.environ, **{e["name"]: e["value"] for e in plugin.get("env") or []}}
    try:
        done = subprocess.run(
            [plugin["command"], *plugin.get("args", [])],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return errors.exec_plugin_not_run(plugin.get("command"), exc)
    return done.stderr.strip() if done.returncode != 0 else None


@pytest.fixture
def kube_namespace(request: pytest.FixtureRequest, kube_client: ApiClient) -> Iterator[str]:
    """A namespace for this test, deleted after it. If the test fails, its pods' logs and
    the manifests of its pods and configmaps are kept as failure artifacts."""
    import secrets

    from kubernetes import client

    core = client.CoreV1Api(kube_client)
    name = f"azpytest-{secrets.token_hex(4)}"
    bounds = _timeouts()
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=name, labels={"app.kubernetes.io/managed-by": "azpytest"}
            )
        ),
        _request_timeout=bounds,
    )
    try:
        yield name
    finally:
        if failed(request.node):
            _collect_namespace(request.node, core, name)
        core.delete_namespace(name, _request_timeout=bounds)


def _collect_namespace(item: pytest.Item, core: CoreV1Api, namespace: str) -> None:
    import yaml

    writer = artifact_state(item.config).writer
    if writer is None:
        return
    api = core.api_client
    for pod in core.list_namespaced_pod(namespace).items:
        name = _name(pod.metadata)
        manifest = yaml.safe_dump(api.sanitize_for_serialization(pod), sort_keys=False)
        writer.write(item.nodeid, f"pod-{name}.yaml", manifest)
        try:
            log = core.read_namespaced_pod_log(name, namespace)
        except Exception as exc:  # a pod that never started has no log: say so, go on
            log = f"(no log: {exc})"
        writer.write(item.nodeid, f"pod-{name}.log", log)
    for cm in core.list_namespaced_config_map(namespace).items:
        manifest = yaml.safe_dump(api.sanitize_for_serialization(cm), sort_keys=False)
        writer.write(item.nodeid, f"configmap-{_name(cm.metadata)}.yaml", manifest)


def _name(metadata: V1ObjectMeta | None) -> str:
    """A listed object's name (the API always sets it; the client's types say it may not)."""
    return str(metadata.name) if metadata is not None else ""


@pytest.fixture(scope="session")
def real_aks_cluster(kubeconfig: Path, kube_client: ApiClient) -> Iterator[AksCluster]:
    """The cluster, checked reachable with the job's identity (lists namespaces once): its
    facts by key and by attribute (`subscription_id`, `resource_group`, `cluster_name`,
    `managed_identity_client_id` = the kubelet identity's client id, `credential`,
    `aks_client`, `kube_client`), and the kubernetes `ApiClient` where one is expected."""
    _check_reachable(kubeconfig, kube_client)
    cluster = AksCluster(kube_client)
    yield cluster
    cluster.close_credential()


def _check_reachable(kubeconfig: Path, kube_client: ApiClient) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from azpytest.http import GaveUp, Timeouts, Transient, retry_after, retrying

    timeouts = Timeouts(float(setting("timeout") or 40))
    host = kube_client.configuration.host

    def attempt(bounds: tuple[float, float]) -> None:
        try:
            client.CoreV1Api(kube_client).list_namespace(limit=1, _request_timeout=bounds)
        except ApiException as exc:
            if exc.status == 429 or (exc.status or 0) >= 500:
                raise Transient(
                    f"HTTP {exc.status} {exc.reason}",
                    retry_after=retry_after(exc.headers or {}),
                ) from None
            raise
        except ValueError as exc:  # the client could not read the answer as JSON
            raise Transient(f"HTTP 200, not JSON ({exc})") from None
        except HTTPError as exc:  # a reset, a timeout: urllib3's own errors
            bound = "read" if "Read timed out" in str(exc) else None
            raise Transient(
                f"the connection failed ({type(exc).__name__})",
                bound=f"the read timeout of {timeouts.read:.3g} s" if bound else None,
            ) from None

    try:
        retrying(attempt, timeouts)
    except GaveUp as gave_up:
        problem = errors.cluster_unavailable(host, gave_up.summary())
    except ApiException as exc:
        # The client only logs a failing exec plugin and sends no token: a bare 401.
        reason = _exec_failure(kubeconfig) if exc.status == 401 else None
        problem = errors.cluster_refused(exc.status, exc.reason, reason)
    except Exception as exc:  # the exec plugin's reason, a network failure: say which
        problem = errors.cluster_unreachable(exc)
    else:
        return
    pytest.fail(problem, pytrace=False)  # outside the except: no chained traceback


class AksCluster(Mapping[str, Any]):
    """`real_aks_cluster`: the shape suites' own fixtures of that name have (a mapping of the
    cluster's facts), with attribute access too, and every other attribute the kubernetes
    `ApiClient`'s, so `client.CoreV1Api(real_aks_cluster)` works as before. The credential,
    the ARM client and the kubelet identity are made on first use."""

    KEYS = (
        "subscription_id",
        "resource_group",
        "cluster_name",
        "managed_identity_client_id",
        "credential",
        "aks_client",
        "kube_client",
    )

    def __init__(self, kube_client: ApiClient) -> None:
        self.kube_client = kube_client
        self.subscription_id = _named("subscription-id", "AZURE_SUBSCRIPTION_ID")
        self.resource_group = _named("aks-resource-group", "AZURE_RESOURCE_GROUP")
        self.cluster_name = _named("aks-cluster", "AZURE_AKS_CLUSTER_NAME")

    def __getitem__(self, key: str) -> Any:
        if key not in self.KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)

    def __getattr__(self, name: str) -> Any:
        # Called only for names this object lacks: the ApiClient's (configuration, close,
        # call_api, ...). Our own lazy keys never fall through (their errors are theirs).
        if name in self.KEYS or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.kube_client, name)

    def __repr__(self) -> str:
        return (
            f"AksCluster(subscription_id={self.subscription_id!r}, "
            f"resource_group={self.resource_group!r}, cluster_name={self.cluster_name!r})"
        )

    @functools.cached_property
    def _settings(self) -> Settings:
        from azpytest import settings

        try:
            return settings.load({}, os.environ)
        except settings.InputError as exc:
            skip_or_fail(errors.no_identity(exc))

    @functools.cached_property
    def credential(self) -> Identity:
        """The job's credential (`azure_credential`'s kind: renewing GitHub OIDC in CI)."""
        from azpytest import identity
        from azpytest.github import Workflow

        return identity.build(self._settings, Workflow(os.environ, out=sys.__stdout__))

    @functools.cached_property
    def aks_client(self) -> Any:
        """An `azure.mgmt.containerservice.ContainerServiceClient` for the subscription (the
        suite's own dependency: azpytest does not install azure-mgmt-containerservice)."""
        try:
            from azure.mgmt.containerservice import ContainerServiceClient
        except ModuleNotFoundError:
            pytest.fail(errors.module_not_installed("azure.mgmt.containerservice"), pytrace=False)
        return ContainerServiceClient(self.credential, self._needed()[0])

    @functools.cached_property
    def managed_identity_client_id(self) -> str:
        """The kubelet identity's client id (the managed cluster's identityProfile, from ARM)."""
        from azpytest import kube
        from azpytest.github import Workflow

        subscription, group, name = self._needed()
        loaded = dataclasses.replace(
            self._settings, subscription_id=subscription, aks_resource_group=group, aks_cluster=name
        )
        try:
            return kube.kubelet_client_id(loaded, self.credential, Workflow(os.environ))
        except errors.Diagnosis as exc:
            pytest.fail(str(exc), pytrace=False)

    def _needed(self) -> tuple[str, str, str]:
        """The cluster's coordinates, or the test fails naming the missing ones."""
        if self.subscription_id and self.resource_group and self.cluster_name:
            return self.subscription_id, self.resource_group, self.cluster_name
        missing = [
            f"{name} ({variables})"
            for name, variables, value in (
                ("subscription-id", "AZURE_SUBSCRIPTION_ID", self.subscription_id),
                ("aks-resource-group", "AZURE_RESOURCE_GROUP", self.resource_group),
                ("aks-cluster", "AZURE_AKS_CLUSTER_NAME", self.cluster_name),
            )
            if not value
        ]
        problem = f"real_aks_cluster needs {', '.join(missing)}: set the input or the variable"
        pytest.fail(errors.fixture_failed(problem), pytrace=False)

    def close_credential(self) -> None:
        if "credential" in self.__dict__:
            self.credential.close()


def _named(setting_name: str, variable: str) -> str | None:
    """A cluster coordinate: the azpytest input, else the name suites read (prepare exports
    both in a job)."""
    return setting(setting_name) or os.environ.get(variable) or None


BACKUP_PREFIX = "config.azpytest-backup-"


def _put_back_after_a_killed_session(home: Path) -> None:
    """A session killed before its teardown left ~/.kube/config a link and the developer's
    file aside under the dead process's id: put that file back first."""
    for backup in home.parent.glob(f"{BACKUP_PREFIX}*"):
        pid = backup.name.removeprefix(BACKUP_PREFIX)
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if home.is_symlink() or not home.exists():
            home.unlink(missing_ok=True)
            backup.rename(home)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def ensure_kubeconfig(kubeconfig: Path) -> Iterator[Path]:
    """The prepared kubeconfig where kubectl and `kubernetes.config.load_kube_config()` look
    by default: `KUBECONFIG` when it names it (as under `azpytest run`), else `~/.kube/config`
    links to it for the session (an existing file there is kept aside and put back after).
    Loaded as the kubernetes client's default configuration."""
    from kubernetes import config

    named = os.environ.get("KUBECONFIG")
    if named and Path(named).resolve() == kubeconfig.resolve():
        config.load_kube_config(config_file=str(kubeconfig))
        yield kubeconfig
        return
    home = Path.home() / ".kube" / "config"
    home.parent.mkdir(parents=True, exist_ok=True)
    _put_back_after_a_killed_session(home)
    backup = home.with_name(f"{BACKUP_PREFIX}{os.getpid()}")
    kept = home.exists() or home.is_symlink()
    if kept:
        home.rename(backup)
    # A link, not a copy: a kubeconfig with a client key stays in the run folder (0600).
    home.symlink_to(kubeconfig.resolve())
    previous = os.environ.get("KUBECONFIG")
    os.environ.pop("KUBECONFIG", None)  # kubectl reads ~/.kube/config then
    try:
        config.load_kube_config(config_file=str(home))
        yield home
    finally:
        home.unlink(missing_ok=True)
        if kept:
            backup.rename(home)
        if previous is not None:
            os.environ["KUBECONFIG"] = previous
