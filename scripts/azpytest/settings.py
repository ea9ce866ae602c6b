"""Every input of the action and flag of the CLI, read once into one frozen, validated object.

Precedence: CLI flag > environment (`AZPYTEST_*`, which action.yml sets from its inputs, and
the standard `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_SUBSCRIPTION_ID`) > a `.env` file
(filling only what is unset) > defaults. Bad input raises `InputError`, which the entry point
turns into exit code 2 and one line naming the input and the fix.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import os
import re
import shlex
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from azpytest.clouds import CLOUDS, DEFAULT_AUDIENCE, Cloud
from azpytest.rundir import RunDir

if TYPE_CHECKING:
    from azpytest.profiles import ProfilesSpec


class InputError(ValueError):
    """A user's input that cannot work; `input` names it as the user spelled it."""

    def __init__(self, input_name: str, problem: str) -> None:
        super().__init__(f"{input_name}: {problem}")
        self.input = input_name
        self.problem = problem


_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_TENANT_DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_VAULT_NAME = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{1,22}[A-Za-z0-9]$")
_SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_SECRET_GLOB = re.compile(r"^[0-9A-Za-z-]{0,126}\*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESOURCE_GROUP = re.compile(r"^[-\w._()]{1,90}$")
_CLUSTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,61}[A-Za-z0-9]?$")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", ""}


@dataclass(frozen=True)
class SecretSpec:
    """One item of the `secrets` input: a secret (or a prefix glob) and where it goes."""

    source: str  # a secret name, or a prefix glob ending in "*"
    env: str | None  # the environment variable; None for a glob (derived per secret)

    @property
    def is_glob(self) -> bool:
        return self.source.endswith("*")

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name.lower(), self.source.lower())


def env_name_for(secret: str) -> str:
    """`pg-host` -> `PG_HOST`: the variable a secret taken by a glob or a list lands in."""
    name = secret.upper().replace("-", "_")
    return name if not name[:1].isdigit() else f"_{name}"


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

    @property
    def use_broker(self) -> bool:
        """Serve tokens on the managed-identity endpoint to the tests: on in Actions by default."""
        return self.in_actions if self.run.broker is None else self.run.broker

    @property
    def rundir(self) -> RunDir:
        """The run folder's owner (paths, private writes, the cleanup record)."""
        return RunDir(self.run_dir)

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


# The inputs of azure/aks-set-context, accepted under their old names: ours -> (old, variable).
ALIASES = {
    "aks-resource-group": ("resource-group", "AZPYTEST_RESOURCE_GROUP"),
    "aks-cluster": ("cluster-name", "AZPYTEST_CLUSTER_NAME"),
    "aks-admin": ("admin", "AZPYTEST_ADMIN"),
}

# Each input: (CLI/action name, environment variables in order of precedence).
INPUT_ENV = {
    "tenant-id": ("AZPYTEST_TENANT_ID", "AZURE_TENANT_ID"),
    "client-id": ("AZPYTEST_CLIENT_ID", "AZURE_CLIENT_ID"),
    "subscription-id": ("AZPYTEST_SUBSCRIPTION_ID", "AZURE_SUBSCRIPTION_ID"),
    "cloud": ("AZPYTEST_CLOUD",),
    "audience": ("AZPYTEST_AUDIENCE",),
    "key-vault": ("AZPYTEST_KEY_VAULT",),
    "secrets": ("AZPYTEST_SECRETS",),
    "aks-resource-group": ("AZPYTEST_AKS_RESOURCE_GROUP",),
    "aks-cluster": ("AZPYTEST_AKS_CLUSTER",),
    "aks-admin": ("AZPYTEST_AKS_ADMIN",),
    "run-dir": ("AZPYTEST_RUN_DIR",),
    "env-file": ("AZPYTEST_ENV_FILE",),
    "debug": ("AZPYTEST_DEBUG", "RUNNER_DEBUG"),
    "profiles": ("AZPYTEST_PROFILES",),
    "tests": ("AZPYTEST_TESTS",),
    "markers": ("AZPYTEST_MARKERS",),
    "pytest-args": ("AZPYTEST_PYTEST_ARGS",),
    "working-directory": ("AZPYTEST_WORKING_DIRECTORY",),
    "workers": ("AZPYTEST_WORKERS",),
    "junit-path": ("AZPYTEST_JUNIT_PATH",),
    "shard-count": ("AZPYTEST_SHARD_COUNT",),
    "shard-index": ("AZPYTEST_SHARD_INDEX",),
    "durations-path": ("AZPYTEST_DURATIONS_PATH",),
    "allow-no-tests": ("AZPYTEST_ALLOW_NO_TESTS",),
    "rerun-failed-from": ("AZPYTEST_RERUN_FAILED_FROM",),
    "reruns": ("AZPYTEST_RERUNS",),
    "python": ("AZPYTEST_PYTHON",),
    "broker": ("AZPYTEST_BROKER",),
    "kubelogin": ("AZPYTEST_KUBELOGIN",),
}


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
        if not sep or not _ENV_NAME.match(key):
            raise InputError(f"env-file {path}", f"line {number} is not KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def load(
    flags: Mapping[str, Any], environ: Mapping[str, str], *, require_identity: bool = True
) -> Settings:
    """Read every input once. `flags` holds CLI values by input name (None when not given).
    `require_identity=False` (cleanup) does not insist on tenant-id and client-id."""
    notes: list[str] = []
    in_actions = environ.get("GITHUB_ACTIONS") == "true"
    env = dict(environ)

    env_file_value = flags.get("env-file") or env.get("AZPYTEST_ENV_FILE")
    env_file = Path(env_file_value) if env_file_value else Path(".env")
    if env_file.is_file():
        for key, value in read_dotenv(env_file).items():
            env.setdefault(key, value)  # the environment always wins
        loaded: Path | None = env_file
    else:
        loaded = None
        if env_file_value:
            raise InputError("env-file", f"{env_file} does not exist")
        if not in_actions:
            notes.append(f"no {env_file} file here; using the environment only")

    def get(name: str) -> str | None:
        value = flags.get(name)
        if value is not None and value != "":
            return str(value)
        for variable in INPUT_ENV[name]:
            if env.get(variable, "").strip():
                return env[variable].strip()
        alias = ALIASES.get(name)
        if alias is not None and env.get(alias[1], "").strip():
            if alias[0] not in noted:
                noted.add(alias[0])
                notes.append(
                    f"{alias[0]} is azure/aks-set-context's name: azpytest calls it "
                    f"{name} (the old name works)"
                )
            return env[alias[1]].strip()
        return None

    noted: set[str] = set()

    cloud_name = get("cloud") or "AzureCloud"
    cloud = CLOUDS.get(cloud_name.lower())
    if cloud is None:
        raise InputError(
            "cloud",
            f"unknown cloud {cloud_name!r}; use one of "
            f"{', '.join(c.name for c in CLOUDS.values())}",
        )

    tenant_id = get("tenant-id")
    if tenant_id is not None and not (_GUID.match(tenant_id) or _TENANT_DOMAIN.match(tenant_id)):
        raise InputError(
            "tenant-id",
            f"{tenant_id!r} is neither a GUID nor a domain "
            "(the Directory (tenant) ID of the app registration)",
        )
    client_id = get("client-id")
    if client_id is not None and not _GUID.match(client_id):
        raise InputError(
            "client-id",
            f"{client_id!r} is not a GUID (the Application (client) "
            "ID of the app registration or managed identity)",
        )
    subscription_id = get("subscription-id")
    if subscription_id is not None and not _GUID.match(subscription_id):
        raise InputError("subscription-id", f"{subscription_id!r} is not a GUID")

    audience = get("audience") or DEFAULT_AUDIENCE
    key_vault = _vault_url(get("key-vault"), cloud)
    secrets = parse_secrets(get("secrets") or "")
    if secrets and key_vault is None:
        raise InputError("secrets", "set key-vault too: the secrets are read from that vault")

    group, cluster = get("aks-resource-group"), get("aks-cluster")
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

    if in_actions and require_identity:
        for name, given in (("tenant-id", tenant_id), ("client-id", client_id)):
            if given is None:
                variable = INPUT_ENV[name][1]
                raise InputError(
                    name,
                    f"required in GitHub Actions: set the {name} input or "
                    f"{variable} (the app registration's {name.split('-')[0]} "
                    "ID; not a secret)",
                )
    elif loaded is not None and (tenant_id is None or client_id is None):
        notes.append(
            f"{loaded} sets neither AZURE_TENANT_ID nor AZURE_CLIENT_ID; "
            "DefaultAzureCredential will pick the identity"
        )

    profiles_text = get("profiles")
    profiles_spec = None
    if profiles_text:
        from azpytest import profiles

        profiles_spec = profiles.parse(profiles_text)  # raises InputError("profiles", ...)
    if profiles_spec is not None and profiles_spec.required_secrets() and key_vault is None:
        raise InputError("profiles", "a field reads a Key Vault secret: set key-vault too")

    return Settings(
        tenant_id=tenant_id,
        client_id=client_id.lower() if client_id else None,
        subscription_id=subscription_id.lower() if subscription_id else None,
        cloud=cloud,
        audience=audience,
        key_vault=key_vault,
        secrets=secrets,
        aks_resource_group=group,
        aks_cluster=cluster,
        aks_admin=_bool("aks-admin", get("aks-admin")),
        run_dir=_run_dir(get("run-dir"), env),
        in_actions=in_actions,
        env_file=loaded,
        debug=_bool("debug", get("debug")),
        profiles=profiles_spec,
        run=_run_options(get),
        notes=tuple(notes),
    )


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
    return RunDir(_run_dir(value or None, environ))


def _words(name: str, value: str | None) -> tuple[str, ...]:
    """A list input: a YAML list, or words split as a shell would (but never run by one)."""
    if not value:
        return ()
    text = value.strip()
    if text.startswith(("[", "- ")):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            raise InputError(name, "not a valid YAML list; write `- item` lines") from None
        if not isinstance(data, list):
            raise InputError(name, "expected a list of strings")
        return tuple(str(item) for item in data)
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise InputError(name, f"{exc} (quote arguments with spaces)") from None


def _int_input(name: str, value: str | None, default: int, minimum: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise InputError(name, f"{value!r} is not a whole number") from None
    if number < minimum:
        raise InputError(name, f"{number} is less than {minimum}")
    return number


def _run_options(get: Callable[[str], str | None]) -> RunOptions:
    count = _int_input("shard-count", get("shard-count"), 1, 1)
    index = _int_input("shard-index", get("shard-index"), 0, 0)
    if index >= count:
        raise InputError(
            "shard-index",
            f"{index} is not below shard-count {count} (indexes "
            "start at 0: use a matrix over range(shard-count))",
        )
    workers = get("workers")
    if workers is not None and workers != "auto" and not workers.isdigit():
        raise InputError("workers", f"{workers!r} is neither a number nor auto")

    def path(key: str) -> Path | None:
        value = get(key)
        return Path(value) if value else None

    rerun_from: tuple[Path, ...] = ()
    pattern = get("rerun-failed-from")
    if pattern:
        found = (
            sorted(glob.glob(pattern, recursive=True))
            if glob.has_magic(pattern)
            else ([pattern] if Path(pattern).is_file() else [])
        )
        if not found:
            raise InputError(
                "rerun-failed-from",
                f"{pattern} matches no file (the JUnit file "
                "of the earlier run, or a glob of its shards')",
            )
        rerun_from = tuple(Path(f) for f in found)
    directory = path("working-directory")
    if directory is not None and not directory.is_dir():
        raise InputError("working-directory", f"{directory} is not a folder")
    return RunOptions(
        tests=_words("tests", get("tests")),
        markers=get("markers"),
        pytest_args=_words("pytest-args", get("pytest-args")),
        working_directory=directory,
        workers=None if workers in (None, "0") else workers,
        junit_path=path("junit-path"),
        shard_count=count,
        shard_index=index,
        durations_path=path("durations-path"),
        allow_no_tests=_bool("allow-no-tests", get("allow-no-tests")),
        rerun_failed_from=rerun_from,
        reruns=_int_input("reruns", get("reruns"), 0, 0),
        python=get("python"),
        broker=None if get("broker") is None else _bool("broker", get("broker")),
        kubelogin=_choice("kubelogin", get("kubelogin"), ("auto", "always", "never")),
    )


def _choice(name: str, value: str | None, choices: tuple[str, ...]) -> str:
    if value is None:
        return choices[0]
    if value.lower() not in choices:
        raise InputError(name, f"{value!r} is not one of {', '.join(choices)}")
    return value.lower()


def _bool(name: str, value: str | None) -> bool:
    if value is None or value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    raise InputError(name, f"{value!r} is not true or false")


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


def parse_secrets(text: str) -> tuple[SecretSpec, ...]:
    """The `secrets` input: a YAML mapping `ENV_NAME: secret-name`, or a list of secret names
    and prefix globs (`pg-*`, `*`) whose variables are derived (`pg-host` -> `PG_HOST`)."""
    if not text.strip():
        return ()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise InputError(
            "secrets",
            f"not valid YAML{where}; write `ENV_NAME: secret-name` lines or a list of secret names",
        ) from None
    if isinstance(data, str):
        data = [item for item in re.split(r"[\s,]+", data) if item]
    specs: list[SecretSpec] = []
    if isinstance(data, dict):
        for env, source in data.items():
            env, source = str(env), str(source) if source is not None else ""
            if not _ENV_NAME.match(env):
                raise InputError("secrets", f"{env!r} is not an environment variable name")
            if "*" in source:
                raise InputError(
                    "secrets",
                    f"{env}: {source!r}: a glob takes many secrets; list "
                    f"it (`- {source}`) instead of mapping it",
                )
            _check_secret_name(source)
            specs.append(SecretSpec(source=source, env=env))
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, dict) and len(item) == 1:
                ((env, source),) = item.items()
                specs.extend(parse_secrets(yaml.safe_dump({env: source})))
                continue
            source = str(item)
            if "*" in source:
                if not _SECRET_GLOB.match(source):
                    raise InputError(
                        "secrets",
                        f"{source!r}: only a prefix glob is supported (`*` or `prefix-*`)",
                    )
                specs.append(SecretSpec(source=source, env=None))
            else:
                _check_secret_name(source)
                specs.append(SecretSpec(source=source, env=env_name_for(source)))
    else:
        raise InputError(
            "secrets", "expected a mapping (`ENV_NAME: secret-name`) or a list of secret names"
        )
    targets = [s.env for s in specs if s.env]
    duplicate = next((t for t in targets if targets.count(t) > 1), None)
    if duplicate:
        raise InputError("secrets", f"{duplicate} is the target of two secrets")
    return tuple(specs)


def _check_secret_name(name: str) -> None:
    if not _SECRET_NAME.match(name):
        raise InputError(
            "secrets",
            f"{name!r} is not a Key Vault secret name (1-127 letters, digits and hyphens)",
        )


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _run_dir(value: str | None, env: Mapping[str, str]) -> Path:
    """`$RUNNER_TEMP/azpytest/<run>`: one folder per job, shard and attempt."""
    if value:
        return Path(value)
    base = Path(env.get("RUNNER_TEMP") or tempfile.gettempdir()) / "azpytest"
    if env.get("GITHUB_RUN_ID"):
        parts = [
            env["GITHUB_RUN_ID"],
            env.get("GITHUB_RUN_ATTEMPT", "1"),
            re.sub(r"[^\w.-]", "_", env.get("GITHUB_JOB", "job")),
        ]
        return base / "-".join(parts)
    return base / f"local-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
