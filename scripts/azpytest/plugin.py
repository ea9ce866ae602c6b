"""The azpytest pytest plugin: fixtures holding real, token-authenticated connections.

Loaded into every pytest run of an environment where azpytest is installed (entry point
`pytest11`), so it is inert until a test asks for one of its fixtures, and it imports
nothing heavy at the top: each fixture imports what it needs when first requested.

Where a fixture's configuration is missing it skips with the reason and the fix on a
laptop, and FAILS in CI (`CI=true`): a suite that silently skips its integration tests in
CI is a suite that silently stopped testing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sys
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from azpytest.rundir import ARTIFACTS

if TYPE_CHECKING:
    import psycopg

    from azpytest.identity import Identity
    from azpytest.profiles import Connection

PG_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
SQL_SCOPE = "https://database.windows.net/.default"
AKS_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("azpytest", "azpytest: Azure integration tests")
    group.addoption(
        "--integration-debug",
        action="store_true",
        default=False,
        help="log azure-core HTTP requests and answers (headers redacted, secrets masked)",
    )
    parser.addini("azpytest_migrations", "folder of .sql files pg_schema applies once, in order")
    parser.addini("azpytest_dbt_project", "dbt project folder the dbt fixture runs in")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "integration: the test uses real Azure or database resources (azpytest fixtures)",
    )
    if config.getoption("integration_debug", default=False):
        _debug_logging()


# ---------------------------------------------------------------------------- artifacts

_ARTIFACTS = pytest.StashKey["ArtifactState"]()
_COLLECTED = pytest.StashKey[list[tuple[str, "str | bytes | Path"]]]()
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def _failed(item: pytest.Item) -> bool:
    """Whether the test has failed so far (setup or call): fixtures ask in their teardown."""
    return any(r.failed for r in item.stash.get(_REPORTS, {}).values())


@dataclass
class ArtifactState:
    writer: Any  # artifacts.ArtifactWriter, or None when no JUnit path says where
    scrubber: Any  # artifacts.Scrubber


def _artifact_state(config: pytest.Config) -> ArtifactState:
    state = config.stash.get(_ARTIFACTS, None)
    if state is None:
        from azpytest.artifacts import ArtifactWriter
        from azpytest.masking import Scrubber

        scrubber = Scrubber.from_environment(os.environ)
        xmlpath = getattr(config.option, "xmlpath", None)
        root = os.environ.get("AZPYTEST_ARTIFACTS_DIR") or (
            str(Path(xmlpath).parent / ARTIFACTS) if xmlpath else None
        )
        writer = ArtifactWriter(Path(root), scrubber) if root else None
        state = ArtifactState(writer=writer, scrubber=scrubber)
        config.stash[_ARTIFACTS] = state
    return state


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    state = _artifact_state(item.config)
    if state.scrubber:
        _scrub_report(report, state.scrubber)
    if report.failed and state.writer is not None:
        _write_failure(item, report, state.writer)
    return report


def _scrub_report(report: Any, scrubber: Any) -> None:
    """Masked values never reach the terminal, the JUnit file or an artifact."""
    if report.longrepr is not None:
        text = str(report.longrepr)
        clean = scrubber.text(text)
        if clean != text:
            report.longrepr = _ScrubbedRepr(
                clean, getattr(report.longrepr, "reprcrash", None), scrubber
            )
    report.sections = [(title, scrubber.text(content)) for title, content in report.sections]


class _ScrubbedRepr:
    """A failure's text with masked values replaced, keeping the crash location and message
    that the JUnit writer and the terminal summary read."""

    def __init__(self, text: str, crash: Any, scrubber: Any) -> None:
        self._text = text
        self.reprcrash = None
        if crash is not None and dataclasses.is_dataclass(crash):
            self.reprcrash = dataclasses.replace(
                crash, path=scrubber.text(str(crash.path)), message=scrubber.text(crash.message)
            )

    def __str__(self) -> str:
        return self._text

    def toterminal(self, out: Any) -> None:
        for line in self._text.splitlines():
            out.line(line)


def _write_failure(item: pytest.Item, report: Any, writer: Any) -> None:
    nodeid = report.nodeid
    phase = report.when
    writer.write(nodeid, f"{phase}-traceback.txt", report.longreprtext or "")
    for title, content in report.sections:
        name = title.lower().replace(" ", "-").replace("captured-", "")
        writer.write(nodeid, f"{name.lower()}.txt", content)
    for name, content in item.stash.get(_COLLECTED, []):
        try:
            if isinstance(content, Path):
                if content.is_dir():
                    for path in sorted(p for p in content.rglob("*") if p.is_file()):
                        writer.copy(nodeid, f"{name}-{path.name}", path)
                elif content.is_file():
                    writer.copy(nodeid, name, content)
            else:
                writer.write(nodeid, name, content)
        except OSError as exc:
            writer.write(nodeid, f"{name}.error.txt", f"could not collect {name}: {exc}")


class ArtifactCollector:
    """Files and text to keep if the test fails (written scrubbed, only on failure)."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item

    def collect(
        self,
        name: str,
        content: str | bytes | Path | None = None,
        *,
        path: str | Path | None = None,
    ) -> None:
        if (content is None) == (path is None):
            raise TypeError("collect(name, content) or collect(name, path=...)")
        value: str | bytes | Path = Path(path) if path is not None else content  # type: ignore[assignment]
        self._item.stash.setdefault(_COLLECTED, []).append((name, value))


@pytest.fixture
def artifact_collector(request: pytest.FixtureRequest) -> ArtifactCollector:
    """`artifact_collector.collect(name, content | path=...)`: kept beside the JUnit file
    (artifacts/<node id>/) if the test fails, with every masked value replaced by ***."""
    return ArtifactCollector(request.node)


def _debug_logging() -> None:
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_MaskFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity", "azpytest"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)


class _MaskFilter:
    """Replace every value azpytest masked (the prepared secrets) in a log record."""

    def filter(self, record: Any) -> bool:
        values = _masked_values()
        if values:
            text = record.getMessage()
            for value in values:
                text = text.replace(value, "***")
            record.msg, record.args = text, ()
        return True


def _masked_values() -> list[str]:
    record = _prepared()
    values = [os.environ[name] for name in record.get("masked_env", []) if os.environ.get(name)]
    return sorted(values, key=len, reverse=True)


def _prepared() -> dict[str, Any]:
    """What `azpytest prepare` recorded for this run (names only), or {}."""
    from azpytest.rundir import RunDir

    run_dir = RunDir.from_environment(os.environ)
    return run_dir.read_prepared() if run_dir is not None else {}


def unavailable(what: str, fix: str) -> NoReturn:
    """Skip locally, fail in CI, with the same one-line reason."""
    message = f"azpytest: {what}; {fix}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (failing rather than skipping because CI=true)", pytrace=False)
    pytest.skip(message)


def _fail_diagnosis(exc: Exception) -> NoReturn:
    text = exc.text() if hasattr(exc, "text") else str(exc)
    pytest.fail(text, pytrace=False)


# ---------------------------------------------------------------------------- identity


@pytest.fixture(scope="session")
def azure_credential() -> Iterator[Identity]:
    """The credential `azpytest prepare` chose: GitHub OIDC in Actions (renewing), else
    DefaultAzureCredential. An Azure SDK TokenCredential."""
    from azpytest import identity, settings
    from azpytest.github import Workflow

    try:
        loaded = settings.load({}, os.environ)
    except settings.InputError as exc:
        unavailable(
            f"no Azure identity configured ({exc})",
            "set AZURE_TENANT_ID and AZURE_CLIENT_ID, or run `azpytest prepare` first",
        )
    who = identity.build(loaded, Workflow(os.environ, out=sys.__stdout__))
    yield who
    who.close()


@pytest.fixture(scope="session")
def azure_token(azure_credential: Identity) -> Callable[[str], str]:
    """`azure_token(scope)`: a current access token for the scope (renewed as needed)."""

    def token(scope: str) -> str:
        from azpytest.errors import Diagnosis

        try:
            return azure_credential.get_token(scope).token
        except Diagnosis as exc:
            _fail_diagnosis(exc)

    return token


# ---------------------------------------------------------------------------- Key Vault


@dataclass(frozen=True)
class PreparedSecrets:
    """The Key Vault secrets `azpytest prepare` fetched, by secret name (values from the
    environment the action gave this step)."""

    env_by_name: dict[str, str]

    def __getitem__(self, name: str) -> str:
        env = self.env_by_name.get(name)
        if env is None:
            raise KeyError(
                f"secret {name!r} was not prepared; add it to the secrets input "
                f"(prepared: {', '.join(sorted(self.env_by_name)) or 'none'})"
            )
        value = os.environ.get(env)
        if value is None:
            raise KeyError(f"secret {name!r} was prepared into {env}, which is not set here")
        return value

    def __contains__(self, name: object) -> bool:
        return name in self.env_by_name

    def names(self) -> list[str]:
        return sorted(self.env_by_name)


@pytest.fixture(scope="session")
def keyvault() -> PreparedSecrets:
    record = _prepared()
    if not record.get("secrets"):
        unavailable(
            "no Key Vault secrets were prepared",
            "run `azpytest prepare` with key-vault and secrets set",
        )
    return PreparedSecrets({s["name"]: s["env"] for s in record["secrets"]})


@pytest.fixture(scope="session")
def keyvault_secret(keyvault: PreparedSecrets) -> Callable[[str], str]:
    def secret(name: str) -> str:
        try:
            return keyvault[name]
        except KeyError as exc:
            pytest.fail(f"azpytest: {exc.args[0]}", pytrace=False)

    return secret


# ---------------------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="session")
def kubeconfig() -> Path:
    path = os.environ.get("KUBECONFIG") or _prepared().get("kubeconfig")
    if not path or not Path(path).is_file():
        unavailable(
            "no AKS kubeconfig was prepared",
            "set aks-resource-group and aks-cluster for `azpytest prepare`",
        )
    return Path(path)


@pytest.fixture(scope="session")
def kube_client(kubeconfig: Path) -> Iterator[Any]:
    """A ready `kubernetes.client.ApiClient` for the prepared cluster."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    yield client
    client.close()


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
        return f"the credential plugin {plugin.get('command')!r} could not run: {exc}"
    return done.stderr.strip() if done.returncode != 0 else None


@pytest.fixture
def kube_namespace(request: pytest.FixtureRequest, kube_client: Any) -> Iterator[str]:
    """A namespace for this test, deleted after it. If the test fails, its pods' logs and
    the manifests of its pods and configmaps are kept as failure artifacts."""
    import secrets

    from kubernetes import client

    core = client.CoreV1Api(kube_client)
    name = f"azpytest-{secrets.token_hex(4)}"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=name, labels={"app.kubernetes.io/managed-by": "azpytest"}
            )
        )
    )
    try:
        yield name
    finally:
        if _failed(request.node):
            _collect_namespace(request.node, core, name)
        core.delete_namespace(name)


def _collect_namespace(item: pytest.Item, core: Any, namespace: str) -> None:
    import yaml

    writer = _artifact_state(item.config).writer
    if writer is None:
        return
    api = core.api_client
    for pod in core.list_namespaced_pod(namespace).items:
        manifest = yaml.safe_dump(api.sanitize_for_serialization(pod), sort_keys=False)
        writer.write(item.nodeid, f"pod-{pod.metadata.name}.yaml", manifest)
        try:
            log = core.read_namespaced_pod_log(pod.metadata.name, namespace)
        except Exception as exc:  # a pod that never started has no log: say so, go on
            log = f"(no log: {exc})"
        writer.write(item.nodeid, f"pod-{pod.metadata.name}.log", log)
    for cm in core.list_namespaced_config_map(namespace).items:
        manifest = yaml.safe_dump(api.sanitize_for_serialization(cm), sort_keys=False)
        writer.write(item.nodeid, f"configmap-{cm.metadata.name}.yaml", manifest)


@pytest.fixture(scope="session")
def real_aks_cluster(kubeconfig: Path, kube_client: Any) -> Any:
    """The cluster, checked reachable with the job's identity (lists namespaces once)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoreV1Api(kube_client).list_namespace(limit=1, _request_timeout=30)
    except ApiException as exc:
        # The client only logs a failing exec plugin and sends no token: a bare 401.
        reason = _exec_failure(kubeconfig) if exc.status == 401 else None
        pytest.fail(
            f"azpytest: the AKS cluster refused the job's identity: HTTP {exc.status} "
            f"{exc.reason}" + (f"\n{reason}" if reason else ""),
            pytrace=False,
        )
    except Exception as exc:  # the exec plugin's reason, a network failure: say which
        pytest.fail(f"azpytest: the AKS cluster is not reachable: {exc}", pytrace=False)
    return kube_client


# ---------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def azpytest_connections() -> dict[str, Connection]:
    from azpytest import profiles

    path = os.environ.get("AZPYTEST_CONNECTIONS")
    if not path:
        unavailable(
            "no connections were prepared (AZPYTEST_CONNECTIONS is not set)",
            "set the profiles input of `azpytest prepare`",
        )
    try:
        return profiles.load_connections(Path(path))
    except (OSError, ValueError) as exc:
        pytest.fail(f"azpytest: cannot read {path}: {exc}", pytrace=False)


def _pick(connections: dict[str, Connection], name: str | None, kind: str) -> Connection:
    candidates = {n: c for n, c in connections.items() if c.kind == kind}
    if name is None:
        if len(candidates) != 1:
            pytest.fail(
                f"azpytest: name the {kind} connection to use: one of "
                f"{', '.join(sorted(candidates)) or 'none'}",
                pytrace=False,
            )
        return next(iter(candidates.values()))
    if name not in candidates:
        pytest.fail(
            f"azpytest: no {kind} connection named {name!r} (prepared: "
            f"{', '.join(sorted(candidates)) or 'none'})",
            pytrace=False,
        )
    return candidates[name]


def _pg_password(spec: Connection, credential: Callable[[], Identity]) -> str:
    if spec.auth == "entra":
        from azpytest.errors import Diagnosis

        try:
            # A fresh token for every new connection: a long session never uses an old one.
            return credential().get_token(spec.scope or PG_SCOPE).token
        except Diagnosis as exc:
            _fail_diagnosis(exc)
    return spec.password()


@pytest.fixture
def pg_connection(
    request: pytest.FixtureRequest, azpytest_connections: dict[str, Connection]
) -> Iterator[Callable[..., Any]]:
    """`pg_connection(name=None, **kwargs)`: a new psycopg 3 connection to a prepared
    PostgreSQL connection, closed after the test."""
    import psycopg

    opened: list[psycopg.Connection[Any]] = []

    def credential() -> Identity:
        return request.getfixturevalue("azure_credential")  # type: ignore[no-any-return]

    def connect(name: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        spec = _pick(azpytest_connections, name, "postgres")
        params: dict[str, Any] = {
            "host": spec.host,
            "port": spec.port,
            "dbname": spec.database,
            "user": spec.user,
            "password": _pg_password(spec, credential),
            "connect_timeout": 15,
            **({"sslmode": spec.sslmode} if spec.sslmode else {}),
        }
        params.update(kwargs)
        conn = psycopg.connect(**params)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


@pytest.fixture
def db_connection(pg_connection: Callable[..., Any]) -> Any:
    """A psycopg connection to the one prepared PostgreSQL connection."""
    return pg_connection()


@pytest.fixture
def azure_sql_connection(
    request: pytest.FixtureRequest, azpytest_connections: dict[str, Connection]
) -> Iterator[Callable[..., Any]]:
    """`azure_sql_connection(name=None)`: pyodbc with the Entra access token attribute."""
    try:
        import pyodbc  # type: ignore[import-not-found]
    except ImportError:
        pytest.skip(
            "azpytest: azure_sql_connection needs pyodbc and the Microsoft ODBC Driver "
            "18 for SQL Server: pip install pyodbc; apt-get install msodbcsql18"
        )
    drivers = [d for d in pyodbc.drivers() if "SQL Server" in d]
    if not drivers:
        pytest.skip(
            "azpytest: no SQL Server ODBC driver installed: apt-get install msodbcsql18 "
            "(https://learn.microsoft.com/sql/connect/odbc/linux-mac/)"
        )
    from azpytest.profiles import azure_sql_token_struct

    opened: list[Any] = []

    def connect(name: str | None = None) -> Any:
        spec = _pick(azpytest_connections, name, "azure-sql")
        conn_str = (
            f"DRIVER={{{drivers[-1]}}};SERVER=tcp:{spec.host},{spec.port or 1433};"
            f"DATABASE={spec.database};Encrypt=yes;TrustServerCertificate=no"
        )
        if spec.auth == "entra":
            token = request.getfixturevalue("azure_token")(SQL_SCOPE)
            conn = pyodbc.connect(conn_str, attrs_before={1256: azure_sql_token_struct(token)})
        else:
            conn = pyodbc.connect(f"{conn_str};UID={spec.user};PWD={spec.password()}")
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


class DbtRunner:
    """`dbt("build")`, `dbt.build("--select", "orders")`: dbt against the prepared profile.
    A failure fails the test with dbt's own error lines (`check=False` returns it instead);
    run_results.json and dbt's log are kept as failure artifacts."""

    def __init__(
        self, project: Path, profiles: Path, output: Path, collector: ArtifactCollector
    ) -> None:
        self.project, self.profiles, self.output = project, profiles, output
        self._collector = collector

    def __call__(self, *args: str, check: bool = True, target: str | None = None) -> Any:
        from azpytest.dbt import run_dbt

        result = run_dbt(
            list(args),
            project_dir=self.project,
            profiles_dir=self.profiles,
            target=target,
            output_dir=self.output,
        )
        self._collector.collect(
            f"dbt-{args[0] if args else 'run'}-run_results.json",
            path=self.output / "run_results.json",
        )
        self._collector.collect("dbt.log", path=result.log_path)
        if check and not result.ok:
            detail = "\n".join(result.error_lines) or result.stdout[-2000:]
            pytest.fail(
                f"dbt {' '.join(args)} failed (exit {result.returncode}):\n{detail}", pytrace=False
            )
        return result

    def build(self, *args: str, **kwargs: Any) -> Any:
        return self("build", *args, **kwargs)

    def run(self, *args: str, **kwargs: Any) -> Any:
        return self("run", *args, **kwargs)

    def test(self, *args: str, **kwargs: Any) -> Any:
        return self("test", *args, **kwargs)

    def seed(self, *args: str, **kwargs: Any) -> Any:
        return self("seed", *args, **kwargs)


@pytest.fixture
def dbt(
    request: pytest.FixtureRequest, artifact_collector: ArtifactCollector, tmp_path: Path
) -> DbtRunner:
    project = request.config.getini("azpytest_dbt_project") or os.environ.get(
        "AZPYTEST_DBT_PROJECT", ""
    )
    if not project:
        unavailable(
            "no dbt project configured",
            "set azpytest_dbt_project in pytest.ini or AZPYTEST_DBT_PROJECT",
        )
    profiles = os.environ.get("DBT_PROFILES_DIR")
    if not profiles:
        unavailable(
            "no dbt profile was prepared (DBT_PROFILES_DIR is not set)",
            "add a dbt section to the profiles input of `azpytest prepare`",
        )
    folder = Path(str(request.config.rootpath)) / str(project)
    return DbtRunner(folder, Path(profiles), tmp_path / "dbt-target", artifact_collector)


@dataclass
class RunSchema:
    """The run's own schema (and login role, where the connection may create roles)."""

    name: str
    connection: Connection
    role: Any = None  # db.RunRole
    migrations: list[str] = field(default_factory=list)
    _connect: Callable[..., Any] | None = None

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A new connection working in the schema (as the run's role when there is one)."""
        assert self._connect is not None
        if self.role is not None:
            kwargs = {"user": self.role.name, "password": self.role.password, **kwargs}
        conn: psycopg.Connection[Any] = self._connect(
            options=f"-c search_path={self.name}", **kwargs
        )
        return conn


@pytest.fixture(scope="session")
def pg_schema(
    request: pytest.FixtureRequest, azpytest_connections: dict[str, Connection]
) -> Iterator[RunSchema]:
    """A schema unique to this run, migrations applied once, dropped at the end; with a
    least-privilege login role valid for the job's time where the connection may create
    roles (AZPYTEST_ROLE_MINUTES, default 360)."""
    import psycopg

    from azpytest import db

    spec = _pick(azpytest_connections, os.environ.get("AZPYTEST_PG_CONNECTION") or None, "postgres")

    def credential() -> Identity:
        return request.getfixturevalue("azure_credential")  # type: ignore[no-any-return]

    def connect(**kwargs: Any) -> psycopg.Connection[Any]:
        params: dict[str, Any] = {
            "host": spec.host,
            "port": spec.port,
            "dbname": spec.database,
            "user": spec.user,
            "connect_timeout": 15,
        }
        if "password" not in kwargs:
            params["password"] = _pg_password(spec, credential)
        if spec.sslmode:
            params["sslmode"] = spec.sslmode
        params.update(kwargs)
        return psycopg.connect(**params, autocommit=True)

    name = db.run_name(os.environ.get("GITHUB_RUN_ID"))
    admin = connect()
    schema = RunSchema(name=name, connection=spec, _connect=connect)
    try:
        db.create_schema(admin, name)
        folder = request.config.getini("azpytest_migrations") or os.environ.get(
            "AZPYTEST_MIGRATIONS", ""
        )
        if folder:
            base = Path(str(request.config.rootpath))
            schema.migrations = db.apply_migrations(admin, name, base / str(folder))
        if db.can_create_roles(admin):
            minutes = int(os.environ.get("AZPYTEST_ROLE_MINUTES", "360"))
            schema.role = db.create_run_role(admin, name, name, dt.timedelta(minutes=minutes))
        yield schema
    finally:
        db.drop_run(admin, name, schema.role.name if schema.role else None)
        admin.close()


@pytest.fixture
def pg_transaction(pg_schema: RunSchema) -> Iterator[Any]:
    """A connection in the run's schema inside a transaction rolled back after the test."""
    from azpytest import db

    conn = pg_schema.connect()
    try:
        with db.rolled_back(conn):
            yield conn
    finally:
        conn.close()
