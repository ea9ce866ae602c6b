"""Every input of the action and flag of the CLI, read once into one frozen, validated object.

Which inputs exist, their variables, types and defaults: the table in inputs.py. Here: the
reading (`_Source`), the grammars of single inputs (vault, ids, AKS names, run folder), the
checks across inputs, and the `Settings` the steps are given.

Precedence: CLI flag > environment (`AZPYTEST_*`, which action.yml sets from its inputs, and
the standard `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_SUBSCRIPTION_ID`) > a `.env` file
(filling only what is unset) > the old azure/aks-set-context names > defaults. Bad input
raises `InputError`, which the entry point turns into exit code 2 and one line naming the
input and the fix.

Every input is checked here, before any step makes a file or a request: what any value may
hold (inputs.check: UTF-8, 64 KiB for YAML and 4 KiB for the rest, one line, path parts), then
its grammar. A file the inputs name is read only if it is small (`FILE_LIMIT`); a folder the
run makes must be one it can make; `python` is run once to learn its version.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azpytest import rundir
from azpytest.clouds import CLOUDS, DEFAULT_AUDIENCE, Cloud
from azpytest.inputs import (
    BY_NAME,
    ENV_NAME,
    SecretSpec,
    check,
    check_text,
    load_yaml,
    parse_secrets,
    raw_value,
)
from azpytest.inputs import InputError as InputError
from azpytest.rundir import RunDir

if TYPE_CHECKING:
    from azpytest.profiles import ProfilesSpec


_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_TENANT_DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_VAULT_NAME = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{1,22}[A-Za-z0-9]$")
_RESOURCE_GROUP = re.compile(r"^[-\w._()]{1,90}$")
_CLUSTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,61}[A-Za-z0-9]?$")
# A URI (scheme:rest) of visible ASCII: what Entra's federated credentials take (<= 600).
_AUDIENCE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[!-~]{1,590}$")
FILE_LIMIT = 16 * 1024 * 1024  # bytes of a file an input names (.env, durations)
# Variables that change the tests' credential chain (DefaultAzureCredential's environment
# credential, a token file): a `.env` template's, empty or not, are not loaded in CI, where
# the identity is the job's (GitHub OIDC).
DOTENV_CI_WITHHELD = (
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
)
MIN_PYTHON = (3, 10)
PYTHON_TIMEOUT = 30  # seconds `python` has to print its version


@dataclass(frozen=True)
class Settings:
    tenant_id: str | None
    client_id: str | None
    subscription_id: str | None
    cloud: Cloud
    audience: str
    key_vault: str | None  # the vault URL, https://<name><suffix>
    secrets: tuple[SecretSpec, ...]
    aks_resource_group: str | None
    aks_cluster: str | None
    aks_admin: bool
    run_dir: Path
    in_actions: bool
    env_file: Path | None
    debug: bool
    profiles: ProfilesSpec | None = None  # connection and dbt profiles (profiles.py)
    run: RunOptions = field(default_factory=lambda: RunOptions())
    notes: tuple[str, ...] = field(default=())  # warnings found while reading the inputs
    timeout: float = 40.0  # seconds one call to a service may take with its retries (http.py)
    # No run-dir given: where `prepare` makes a folder of its own (each prepare one: two action
    # steps in one job, or two runs on a laptop, never share), and on a laptop the `latest`
    # link to the newest one, which run, exec and cleanup follow.
    fresh_run_dir: Path | None = None
    latest_link: Path | None = None
    strip_secret_whitespace: bool = False  # Key Vault values lose whitespace at their ends
    dbt_project: Path | None = None  # the dbt project whose profile: the profiles input matched
    dotenv_withheld: tuple[str, ...] = ()  # .env variables not loaded in CI (DOTENV_CI_WITHHELD)

    @property
    def use_broker(self) -> bool:
        """Serve tokens on the managed-identity endpoint to the tests: on in Actions by default."""
        return self.in_actions if self.run.broker is None else self.run.broker

    @property
    def rundir(self) -> RunDir:
        """The run folder's owner (paths, private writes, the cleanup record)."""
        return RunDir(self.run_dir)

    def claim_run_dir(self, *, new: bool) -> Settings:
        """This step's run folder, made. With no run-dir given, `prepare` (`new`) makes a
        folder of its own (`fresh_run_dir`, else `.2`, `.3`, ...); run and exec do too unless
        they found a prepared one (on a laptop, the `latest` link), which then points here."""
        settings = self
        if self.fresh_run_dir is not None and (new or self.run_dir == self.fresh_run_dir):
            settings = replace(self, run_dir=rundir.fresh(self.fresh_run_dir))
        settings.rundir.create()
        if settings.latest_link is not None:
            rundir.point_latest(settings.latest_link, settings.run_dir)
        return settings

    @property
    def vault_name(self) -> str | None:
        if self.key_vault is None:
            return None
        return self.key_vault.removeprefix("https://").split(".", 1)[0]


@dataclass(frozen=True)
class RunOptions:
    """The inputs of `azpytest run`."""

    tests: tuple[str, ...] = ()
    markers: str | None = None
    pytest_args: tuple[str, ...] = ()
    working_directory: Path | None = None
    workers: str | None = None  # pytest-xdist -n: a number or "auto"
    junit_path: Path | None = None  # None: <run_dir>/junit.xml
    shard_count: int = 1
    shard_index: int = 0  # 0-based, as a matrix over range(shard_count) gives it
    durations_path: Path | None = None
    allow_no_tests: bool = False
    rerun_failed_from: tuple[Path, ...] = ()  # JUnit files (a glob: the shards of a run)
    reruns: int = 0
    python: str | None = None  # the interpreter that runs pytest (default: this one)
    broker: bool | None = None  # the token broker; None: not given (Settings.use_broker)
    kubelogin: str = "auto"  # the kubelogin stand-in on the tests' PATH: auto, always, never
    defer_test_failure: bool = False  # tests failed: exit 0, the report step fails the job


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (optional `export`, quotes, # comments), as the seed project reads them."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not ENV_NAME.match(key):
            raise InputError(f"env-file {path}", f"line {number} is not KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


class _Source:
    """Where the values come from, in order: flags, the environment, the .env file, the old
    azure/aks-set-context names, defaults. Notes what it noticed on the way."""

    def __init__(self, flags: Mapping[str, Any], environ: Mapping[str, str]) -> None:
        self.flags = flags
        self.in_actions = environ.get("GITHUB_ACTIONS") == "true"
        self.env = dict(environ)
        self.notes: list[str] = []
        self.dotenv_withheld: list[str] = []
        spec = BY_NAME["env-file"]
        given = (flags.get(spec.name) or environ.get(spec.variable) or "").strip()
        if given:
            check_text(spec.name, given, spec.kind)
        path = Path(given) if given else Path(".env")
        self.env_file: Path | None = None
        kind = _kind_of(spec.name, path)
        if kind == "file":
            try:
                if path.stat().st_size > FILE_LIMIT:
                    raise InputError(f"env-file {path}", f"is over {FILE_LIMIT >> 20} MiB")
                values = read_dotenv(path)
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                raise InputError(f"env-file {path}", f"cannot read it ({reason})") from None
            for key, value in values.items():
                if self.in_actions and key in DOTENV_CI_WITHHELD:
                    self.dotenv_withheld.append(key)
                    continue
                self.env.setdefault(key, value)  # the environment always wins
            self.env_file = path
        elif given and kind == "folder":
            raise InputError("env-file", f"{path} is a folder; give the .env file in it")
        elif given and kind == "other":
            raise InputError("env-file", f"{path} is not a file")
        elif given:
            raise InputError("env-file", f"{path} does not exist")
        elif not self.in_actions:
            self.notes.append(f"no {path} file here; using the environment only")

    def get(self, name: str) -> str | None:
        """The input's value, checked (bools, numbers and choices normalised) or None."""
        spec = BY_NAME[name]
        value = self.flags.get(name)
        raw = str(value) if value is not None and value != "" else None
        if raw is None:
            found = raw_value(spec, self.env)
            raw = found[1] if found else None
        old = spec.alias_variable
        if raw is None and old is not None and self.env.get(old, "").strip():
            self.notes.append(
                f"{spec.alias} is azure/aks-set-context's name: azpytest calls it "
                f"{name} (the old name works)"
            )
            raw = self.env[old]
        return check(spec, raw)


def load(flags: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """Read every input of prepare, run and exec once, from the table in inputs.py. `flags`
    holds CLI values by input name (None when not given)."""
    source = _Source(flags, environ)
    get = source.get
    cloud = _cloud(get("cloud"))
    tenant_id, client_id, subscription_id = (
        _checked(name, get(name)) for name in ("tenant-id", "client-id", "subscription-id")
    )
    key_vault = _vault_url(get("key-vault"), cloud)
    secrets = parse_secrets(get("secrets") or "")
    if secrets and key_vault is None:
        raise InputError("secrets", "set key-vault too: the secrets are read from that vault")
    group, cluster = _aks(get("aks-resource-group"), get("aks-cluster"), subscription_id)
    if source.in_actions:
        for name, given in (("tenant-id", tenant_id), ("client-id", client_id)):
            if given is None:
                raise InputError(
                    name,
                    f"required in GitHub Actions: set the {name} input or "
                    f"{BY_NAME[name].env[0]} (the app registration's {name.split('-')[0]} "
                    "ID; not a secret)",
                )
    elif source.env_file is not None and (tenant_id is None or client_id is None):
        source.notes.append(
            f"{source.env_file} sets neither AZURE_TENANT_ID nor AZURE_CLIENT_ID; "
            "DefaultAzureCredential will pick the identity"
        )
    profiles_spec = _profiles(get("profiles"), key_vault, cloud)
    run_options = _run_options(get, source.env)
    dbt_project = _dbt_project(get("dbt-project"), run_options.working_directory, profiles_spec)
    return Settings(
        tenant_id=tenant_id,
        client_id=client_id.lower() if client_id else None,
        subscription_id=subscription_id.lower() if subscription_id else None,
        cloud=cloud,
        audience=_audience(get("audience")),
        key_vault=key_vault,
        secrets=secrets,
        aks_resource_group=group,
        aks_cluster=cluster,
        aks_admin=get("aks-admin") == "true",
        run_dir=_folder_to_make("run-dir", _run_dir(get("run-dir"), source.env)),
        fresh_run_dir=None if get("run-dir") else _default_run_dir(source.env),
        latest_link=None if get("run-dir") else latest_link(source.env),
        in_actions=source.in_actions,
        env_file=source.env_file,
        debug=get("debug") == "true",
        profiles=profiles_spec,
        run=run_options,
        notes=tuple(dict.fromkeys(source.notes)),
        timeout=float(get("timeout") or 40),
        strip_secret_whitespace=get("strip-secret-whitespace") == "true",
        dbt_project=dbt_project,
        dotenv_withheld=tuple(source.dotenv_withheld),
    )


def _cloud(name: str | None) -> Cloud:
    cloud = CLOUDS.get((name or "").lower())
    if cloud is None:
        raise InputError(
            "cloud",
            f"unknown cloud {name!r}; use one of {', '.join(c.name for c in CLOUDS.values())}",
        )
    return cloud


def _checked(name: str, value: str | None) -> str | None:
    """tenant-id (a GUID or a domain), client-id and subscription-id (GUIDs)."""
    if value is None or _GUID.match(value):
        return value
    if name == "tenant-id" and _TENANT_DOMAIN.match(value):
        return value
    problem = {
        "tenant-id": "is neither a GUID nor a domain (the Directory (tenant) ID of the app "
        "registration)",
        "client-id": "is not a GUID (the Application (client) ID of the app registration or "
        "managed identity)",
    }.get(name, "is not a GUID")
    raise InputError(name, f"{value!r} {problem}")


def _aks(
    group: str | None, cluster: str | None, subscription_id: str | None
) -> tuple[str | None, str | None]:
    if (group is None) != (cluster is None):
        missing = "aks-cluster" if cluster is None else "aks-resource-group"
        raise InputError(missing, "set both aks-resource-group and aks-cluster, or neither")
    if group is not None and not _RESOURCE_GROUP.match(group):
        raise InputError("aks-resource-group", f"{group!r} is not a resource group name")
    if cluster is not None and not _CLUSTER.match(cluster):
        raise InputError("aks-cluster", f"{cluster!r} is not an AKS cluster name")
    if group is not None and subscription_id is None:
        raise InputError(
            "subscription-id",
            "required with aks-cluster: the cluster's subscription (or set AZURE_SUBSCRIPTION_ID)",
        )
    return group, cluster


def _profiles(text: str | None, key_vault: str | None, cloud: Cloud) -> ProfilesSpec | None:
    if not text:
        return None
    from azpytest import profiles

    spec = profiles.parse(text, cloud)  # raises InputError("profiles", ...)
    if spec.required_secrets() and key_vault is None:
        raise InputError("profiles", "a field reads a Key Vault secret: set key-vault too")
    return spec


def _dbt_project(
    given: str | None, working_directory: Path | None, spec: ProfilesSpec | None
) -> Path | None:
    """The dbt project the profiles input's dbt section serves, when it is known: the
    dbt-project input (relative to working-directory), else working-directory or the current
    folder when it holds a dbt_project.yml. Its `profile:` must be the one written."""
    if spec is None or spec.dbt is None:
        return None
    from azpytest import profiles

    base = working_directory or Path.cwd()
    folder = base / given if given else base
    if not (folder / profiles.DBT_PROJECT_FILE).is_file():
        if given:
            raise InputError(
                "dbt-project", f"{folder} has no {profiles.DBT_PROJECT_FILE}: give the dbt project"
            )
        return None
    profiles.check_project(spec, folder)  # raises InputError("profiles", ...)
    return folder


def load_run_dir(flags: Mapping[str, Any], environ: Mapping[str, str]) -> RunDir:
    """Only the run folder, as `load` would find it, for cleanup: no other input is read, so
    a bad unrelated input (or an unreadable .env) never stops the credentials' deletion."""
    value = flags.get("run-dir") or environ.get("AZPYTEST_RUN_DIR", "").strip()
    if not value:
        env_file = Path(flags.get("env-file") or environ.get("AZPYTEST_ENV_FILE") or ".env")
        try:
            value = read_dotenv(env_file).get("AZPYTEST_RUN_DIR", "").strip()
        except (OSError, UnicodeDecodeError, InputError):
            value = ""
    if value:
        check_text("run-dir", value, "path")  # its own input: a bad one is one line
    return RunDir(_run_dir(value or None, environ))


def _words(name: str, value: str | None) -> tuple[str, ...]:
    """A list input: a YAML list, or words split as a shell would (but never run by one)."""
    if not value:
        return ()
    text = value.strip()
    if text.startswith(("[", "- ")):
        data = load_yaml(name, text, "not a valid YAML list; write `- item` lines")
        if not isinstance(data, list):
            raise InputError(name, "expected a list of strings")
        for item in data:  # a number is a word; `true`, `null` or a mapping would be mangled
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise InputError(
                    name, f"the item {item!r} is not text; quote it (YAML read another type)"
                )
        return tuple(str(item) for item in data)
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise InputError(name, f"{exc} (quote arguments with spaces)") from None


def _run_options(get: Callable[[str], str | None], environ: Mapping[str, str]) -> RunOptions:
    count = int(get("shard-count") or 1)
    index = int(get("shard-index") or 0)
    if index >= count:
        raise InputError(
            "shard-index",
            f"{index} is not below shard-count {count} (indexes "
            "start at 0: use a matrix over range(shard-count))",
        )
    workers = get("workers")
    if workers is not None and workers != "auto" and not re.fullmatch(r"[0-9]+", workers):
        raise InputError("workers", f"{workers!r} is neither a number nor auto")

    def path(key: str) -> Path | None:
        value = get(key)
        return Path(value) if value else None

    rerun_from: tuple[Path, ...] = ()
    pattern = get("rerun-failed-from")
    if pattern:
        found = (
            sorted(f for f in glob.glob(pattern, recursive=True) if Path(f).is_file())
            if glob.has_magic(pattern)
            else ([pattern] if _kind_of("rerun-failed-from", Path(pattern)) == "file" else [])
        )
        if not found:
            raise InputError(
                "rerun-failed-from",
                f"{pattern} matches no file (the JUnit file "
                "of the earlier run, or a glob of its shards')",
            )
        rerun_from = tuple(Path(f) for f in found)
    directory = path("working-directory")
    if directory is not None and _kind_of("working-directory", directory) != "folder":
        raise InputError("working-directory", f"{directory} is not a folder")
    return RunOptions(
        tests=_words("tests", get("tests")),
        markers=get("markers"),
        pytest_args=_words("pytest-args", get("pytest-args")),
        working_directory=directory,
        workers=None if workers in (None, "0") else workers,
        junit_path=_file_to_write("junit-path", path("junit-path")),
        shard_count=count,
        shard_index=index,
        durations_path=_durations(path("durations-path")),
        allow_no_tests=get("allow-no-tests") == "true",
        rerun_failed_from=rerun_from,
        reruns=int(get("reruns") or 0),
        python=_python(get("python"), environ),
        broker=None if get("broker") is None else get("broker") == "true",
        kubelogin=get("kubelogin") or "auto",
        defer_test_failure=get("defer-test-failure") == "true",
    )


def _kind_of(name: str, path: Path) -> str | None:
    """ "folder", "file", "other" (a device, a socket...) or None when nothing is there; any
    other error of the system (a name too long, a loop of links) is the input's one line."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte
        raise InputError(name, f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def _nearest(name: str, path: Path) -> tuple[Path, str | None]:
    """The path itself or its nearest parent that exists, and what it is."""
    for candidate in (path, *path.absolute().parents):
        kind = _kind_of(name, candidate)
        if kind is not None:
            return candidate, kind
    return Path("/"), "folder"


def _folder_to_make(name: str, path: Path) -> Path:
    """`path` if it is a folder this process can write into, or can make: a file there, a
    file or a folder it cannot write above it, or a system folder (/proc) is one line now,
    not a traceback when the step makes it."""
    found, kind = _nearest(name, path)
    if found == path and kind == "folder":
        if not os.access(path, os.W_OK | os.X_OK):
            raise InputError(name, f"{path} is a folder this user cannot write into")
        return path
    if kind != "folder":
        what = "a file" if kind == "file" else "not a folder"
        if found == path:
            raise InputError(name, f"{path} is {what}; give a folder")
        raise InputError(name, f"{path} cannot be made: {found} is {what}")
    try:  # the one sure test of "can be made": make a folder there, and remove it
        os.rmdir(tempfile.mkdtemp(prefix=".azpytest-probe-", dir=found))
    except OSError as exc:
        raise InputError(name, f"{path} cannot be made in {found} ({exc.strerror})") from None
    return path


def _file_to_write(name: str, path: Path | None) -> Path | None:
    """A file a step writes (the JUnit file): not a folder, and under a folder (or a path
    that can become one), not under a file."""
    if path is None:
        return None
    found, kind = _nearest(name, path)
    if found == path and kind == "folder":
        raise InputError(name, f"{path} is a folder; give the path of the file to write")
    if found != path and kind != "folder":
        raise InputError(name, f"{path} cannot be written: {found} is not a folder")
    return path


def _durations(path: Path | None) -> Path | None:
    """pytest-split's durations file, checked before pytest reads it (which would be an
    INTERNALERROR): absent is fine (the first run has none); else a JSON mapping of test ids
    to seconds (or the older list of [test id, seconds] pairs)."""
    name = "durations-path"
    kind = _kind_of(name, path) if path is not None else None
    if path is None or kind is None:
        return path
    if kind != "file":
        what = "a folder" if kind == "folder" else "not a file"
        raise InputError(name, f"{path} is {what}; give the durations file an earlier run wrote")
    try:
        if path.stat().st_size > FILE_LIMIT:
            raise InputError(name, f"{path} is over {FILE_LIMIT >> 20} MiB")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise InputError(name, f"cannot read {path} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(name, f"{path} is not UTF-8 text") from None
    except (ValueError, RecursionError):
        raise InputError(
            name, f"{path} is not JSON; give the durations file an earlier run wrote"
        ) from None
    pairs = data.items() if isinstance(data, dict) else data if isinstance(data, list) else None
    if pairs is None or not all(
        isinstance(pair, (list, tuple))
        and len(pair) == 2
        and isinstance(pair[0], str)
        and isinstance(pair[1], (int, float))
        and not isinstance(pair[1], bool)
        for pair in pairs
    ):
        raise InputError(
            name,
            f"{path} is not a mapping of test ids to seconds (the durations file an earlier "
            "run wrote)",
        )
    return path


def _python(value: str | None, environ: Mapping[str, str]) -> str | None:
    """The interpreter for pytest, as given, once it answered with its version (>= 3.10)."""
    name = "python"
    if value is None:
        return None
    if " " in value and _kind_of(name, Path(value)) is None:
        raise InputError(name, f"{value!r} has arguments; give the interpreter alone")
    if "/" in value:
        kind = _kind_of(name, Path(value))
        if kind is None:
            raise InputError(name, f"{value} does not exist")
        if kind != "file":
            raise InputError(name, f"{value} is not a file")
        if not os.access(value, os.X_OK):
            raise InputError(name, f"{value} is not executable")
        executable = value
    else:
        found = shutil.which(value, path=environ.get("PATH", ""))
        if found is None:
            raise InputError(name, f"{value!r} is not a program on PATH")
        executable = found
    script = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        done = subprocess.run(
            [executable, "-c", script],
            capture_output=True,
            text=True,
            errors="replace",
            stdin=subprocess.DEVNULL,
            timeout=PYTHON_TIMEOUT,
            env=dict(environ),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InputError(name, f"{value} did not answer in {PYTHON_TIMEOUT} s") from None
    except OSError as exc:
        raise InputError(name, f"cannot run {value} ({exc.strerror})") from None
    version = re.fullmatch(r"(\d+)\.(\d+)", done.stdout.strip())
    if done.returncode != 0 or version is None:
        raise InputError(name, f"{value} is not a Python interpreter (-c printed no version)")
    found_version = (int(version[1]), int(version[2]))
    if found_version < MIN_PYTHON:
        raise InputError(
            name, f"{value} is Python {version[0]}; pytest runs under 3.10 or later here"
        )
    return value


def _audience(value: str | None) -> str:
    if value is None:
        return DEFAULT_AUDIENCE
    if not _AUDIENCE.match(value):
        raise InputError(
            "audience",
            f"{value!r} is not an audience: a URI of visible characters (no spaces, at most "
            f"600), as Entra's federated credential has it; default {DEFAULT_AUDIENCE}",
        )
    return value


def _vault_url(value: str | None, cloud: Cloud) -> str | None:
    if value is None:
        return None
    name = value.strip()
    if name.startswith("https://") or name.startswith("http://"):
        host = name.split("://", 1)[1].split("/", 1)[0].lower()
        if name.startswith("http://"):
            raise InputError("key-vault", f"{value!r}: Key Vault is reached over https://")
        if not host.endswith(cloud.vault_suffix):
            raise InputError(
                "key-vault",
                f"{value!r} is not a {cloud.name} vault URL "
                f"(https://<name>{cloud.vault_suffix}); set cloud if "
                "the vault is in another cloud",
            )
        name = host[: -len(cloud.vault_suffix)]
    if not _VAULT_NAME.match(name):
        raise InputError(
            "key-vault",
            f"{value!r} is not a vault name (3-24 letters, digits and "
            "single hyphens, starting with a letter) or a vault URL",
        )
    return f"https://{name.lower()}{cloud.vault_suffix}"


def _run_dir(value: str | None, env: Mapping[str, str]) -> Path:
    """The run folder: `run-dir`, else on a laptop the newest prepared one (the `latest`
    link), else a new one (`_default_run_dir`)."""
    if value:
        return Path(value)
    link = latest_link(env)
    if link is not None and link.is_symlink() and link.resolve().is_dir():
        return link.resolve()
    return _default_run_dir(env)


def _default_run_dir(env: Mapping[str, str]) -> Path:
    """`$RUNNER_TEMP/azpytest/<run id>-<attempt>-<job>` in Actions (one per job, shard and
    attempt); on a laptop `<temp>/azpytest/local-<uid>-<date>-<time>` (one per run)."""
    base = Path(env.get("RUNNER_TEMP") or tempfile.gettempdir()) / "azpytest"
    if env.get("GITHUB_RUN_ID"):
        parts = [
            env["GITHUB_RUN_ID"],
            env.get("GITHUB_RUN_ATTEMPT", "1"),
            re.sub(r"[^\w.-]", "_", env.get("GITHUB_JOB", "job")),
        ]
        return base / "-".join(parts)
    return base / f"{_local_prefix()}-{time.strftime('%Y%m%d-%H%M%S')}"


def latest_link(env: Mapping[str, str]) -> Path | None:
    """On a laptop, `<temp>/azpytest/local-<uid>-latest`: the newest run folder."""
    if env.get("GITHUB_RUN_ID"):
        return None
    base = Path(env.get("RUNNER_TEMP") or tempfile.gettempdir()) / "azpytest"
    return base / f"{_local_prefix()}-latest"


def _local_prefix() -> str:
    return f"local-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
