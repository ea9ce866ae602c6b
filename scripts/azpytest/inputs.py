"""Every input, once: its name, where it is read, its variables, flag, help, type and default.

One table serves the CLI (flags and help, by group), `settings.load` (precedence and
validation), the pytest plugin and the report (the variables they read, validated the same
way), action.yml and the README (a test checks that all three name the same inputs).

Where an input is read:
- `steps`: the `azpytest` subcommands that take it as a `--flag` (and from its variables);
- `action`: an input of action.yml (which passes it to the steps as `AZPYTEST_<NAME>`);
- `ACTION_STEPS_ONLY` inputs steer action.yml itself (its setup, upload, merge mode);
- `plugin`: read by the pytest plugin from the test process's environment.
Precedence: flag > the variables in order > a `.env` file (filling only what is unset) >
the old azure/aks-set-context name > default.

What any input may hold, checked where it is read (`check`), before any grammar of its own:
UTF-8 text, at most 64 KiB for the YAML inputs (`secrets`, `profiles`, `tests`, `pytest-args`)
and 4 KiB for every other; no control character but in the YAML inputs' line breaks and tabs;
a path's parts at most 255 bytes each. YAML is read by `load_yaml` alone: no anchors or
aliases, no key given twice. A value that breaks a rule is an `InputError` naming the input,
whose text is one line (control characters in it are escaped).
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azpytest.clouds import CLOUDS, DEFAULT_AUDIENCE

IDENTITY = "identity and Key Vault"
RUN = "test run"
REPORT = "report"
PLUGIN = "pytest plugin"
ACTION = "action setup and upload"

# Booleans are `true` or `false` (any case) and nothing else: `yes`, `1` or a typo would
# otherwise be read as one or the other, and a wrong guess can turn a failing job green.
# The runner's own RUNNER_DEBUG is `1` when a user reruns with debug logging.
RUNNER_BOOLEANS = {"RUNNER_DEBUG": {"1": "true", "0": "false"}}

SECRET_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_SECRET_GLOB = re.compile(r"^[0-9A-Za-z-]{0,126}\*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

STEPS = ("prepare", "run", "exec", "cleanup")  # the steps that take every identity/run input

YAML_LIMIT = 64 * 1024  # bytes of a YAML input (secrets, profiles, tests, pytest-args)
TEXT_LIMIT = 4 * 1024  # bytes of any other input: a name, an id, a path, an expression
NAME_MAX = 255  # bytes of one part of a path (a longer one is "File name too long")
_MULTILINE = ("yaml", "words")  # the kinds whose values may span lines (YAML text)


class InputError(ValueError):
    """A user's input that cannot work; `input` names it as the user spelled it. Its text is
    one line: a control character (a line break in a value it quotes) is escaped."""

    def __init__(self, input_name: str, problem: str) -> None:
        input_name, problem = one_line(input_name), one_line(problem)
        super().__init__(f"{input_name}: {problem}")
        self.input = input_name
        self.problem = problem


def one_line(text: str) -> str:
    """`text` with every character that is not printable escaped (`\\n`, `\\udcff`)."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


@dataclass(frozen=True)
class Input:
    name: str  # the action input and the CLI flag (--name)
    help: str
    group: str
    kind: str = "text"  # text | bool | int | choice | path | yaml | words (a YAML list or words)
    env: tuple[str, ...] = ()  # standard variables read after AZPYTEST_<NAME>
    default: str | None = None
    choices: tuple[str, ...] = ()
    minimum: int = 0
    alias: str | None = None  # azure/aks-set-context's name of the same input
    steps: tuple[str, ...] = STEPS
    action: bool = True
    plugin: bool = False
    flags: tuple[str, ...] = ()  # extra flag spellings (kept for compatibility)

    @property
    def variable(self) -> str:
        return variable_of(self.name)

    @property
    def variables(self) -> tuple[str, ...]:
        return (self.variable, *self.env)

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def alias_variable(self) -> str | None:
        return variable_of(self.alias) if self.alias else None


def variable_of(name: str) -> str:
    return "AZPYTEST_" + name.upper().replace("-", "_")


_CLOUD_NAMES = tuple(c.name for c in CLOUDS.values())

INPUTS: tuple[Input, ...] = (
    # ------------------------------------------------------------ identity and Key Vault
    Input(
        "tenant-id",
        "Directory (tenant) ID of the app registration (or AZURE_TENANT_ID)",
        IDENTITY,
        env=("AZURE_TENANT_ID",),
        steps=(*STEPS, "kube-token"),
    ),
    Input(
        "client-id",
        "Application (client) ID of the app registration (or AZURE_CLIENT_ID)",
        IDENTITY,
        env=("AZURE_CLIENT_ID",),
        steps=(*STEPS, "kube-token"),
    ),
    Input(
        "subscription-id",
        "subscription of the AKS cluster (or AZURE_SUBSCRIPTION_ID)",
        IDENTITY,
        env=("AZURE_SUBSCRIPTION_ID",),
    ),
    Input(
        "cloud",
        f"{_CLOUD_NAMES[0]} (default), {', '.join(_CLOUD_NAMES[1:-1])} or {_CLOUD_NAMES[-1]}",
        IDENTITY,
        default=_CLOUD_NAMES[0],
        steps=(*STEPS, "kube-token"),
    ),
    Input(
        "audience",
        f"audience of the GitHub OIDC token (default {DEFAULT_AUDIENCE})",
        IDENTITY,
        default=DEFAULT_AUDIENCE,
        steps=(*STEPS, "kube-token"),
    ),
    Input("key-vault", "vault name or URL to read the secrets from", IDENTITY),
    Input(
        "secrets",
        "YAML: ENV_NAME: secret-name lines, or a list of names and prefix globs",
        IDENTITY,
        kind="yaml",
    ),
    Input(
        "aks-resource-group",
        "resource group of the AKS cluster",
        IDENTITY,
        alias="resource-group",
    ),
    Input("aks-cluster", "name of the AKS cluster", IDENTITY, alias="cluster-name"),
    Input("aks-admin", "use the cluster admin credential", IDENTITY, kind="bool", alias="admin"),
    Input(
        "profiles",
        "YAML: connections (postgres, azure-sql) and the dbt profile, from Key Vault",
        IDENTITY,
        kind="yaml",
    ),
    Input(
        "strip-secret-whitespace",
        "remove whitespace (a trailing newline) at the ends of Key Vault values",
        IDENTITY,
        kind="bool",
        steps=("prepare",),
    ),
    Input(
        "run-dir",
        "folder for this run's files (default $RUNNER_TEMP/azpytest/<run>)",
        IDENTITY,
        kind="path",
        action=False,
        steps=(*STEPS, "report"),
    ),
    Input(
        "env-file",
        "the .env file to fill unset variables from (default ./.env)",
        IDENTITY,
        kind="path",
        action=False,
    ),
    Input(
        "debug",
        "log more (never a secret)",
        IDENTITY,
        kind="bool",
        env=("RUNNER_DEBUG",),
        plugin=True,
    ),
    # ------------------------------------------------------------ test run
    Input("tests", "test paths or node ids (space-separated or a YAML list)", RUN, kind="words"),
    Input("markers", "pytest -m expression", RUN),
    Input(
        "pytest-args",
        "more pytest arguments (a YAML list, or words; never run through a shell)",
        RUN,
        kind="words",
    ),
    Input(
        "working-directory",
        "where pytest runs (the report finds test files from it)",
        RUN,
        kind="path",
        steps=(*STEPS, "report"),
    ),
    Input("workers", "pytest-xdist workers (-n): a number or auto", RUN),
    Input(
        "junit-path",
        "the JUnit XML file (default <run-dir>/junit.xml)",
        RUN,
        kind="path",
        steps=(*STEPS, "report"),
    ),
    Input(
        "shard-count",
        "split the suite into this many shards (pytest-split)",
        RUN,
        kind="int",
        default="1",
        minimum=1,
    ),
    Input("shard-index", "this shard, 0 to shard-count - 1", RUN, kind="int", default="0"),
    Input(
        "durations-path",
        "test durations from an earlier run, to balance the shards",
        RUN,
        kind="path",
    ),
    Input(
        "allow-no-tests",
        "do not fail when pytest collects no tests",
        RUN,
        kind="bool",
        steps=(*STEPS, "report"),
    ),
    Input(
        "rerun-failed-from",
        "run only the tests that failed or errored in this JUnit file",
        RUN,
        kind="path",
    ),
    Input(
        "reruns",
        "retry a failing test up to N times (pytest-rerunfailures)",
        RUN,
        kind="int",
        default="0",
    ),
    Input(
        "python",
        "the interpreter that runs pytest (default: azpytest's)",
        RUN,
        kind="path",
        action=False,
    ),
    Input(
        "broker",
        "serve the job's tokens to the tests' own DefaultAzureCredential (default: on in "
        "GitHub Actions)",
        RUN,
        kind="bool",
    ),
    Input(
        "kubelogin",
        "auto (default), always or never: azpytest's kubelogin stand-in on PATH",
        RUN,
        kind="choice",
        choices=("auto", "always", "never"),
        default="auto",
    ),
    Input(
        "defer-test-failure",
        "exit 0 when tests fail, for a later `azpytest report --fail-on-test-failure` (the "
        "action sets it, so the summary is written before the job fails)",
        RUN,
        kind="bool",
        action=False,
    ),
    # ------------------------------------------------------------ report
    Input(
        "fail-on-test-failure",
        "report: exit 1 if a test failed or errored",
        REPORT,
        kind="bool",
        steps=("report",),
        flags=("--fail-on-failure",),
    ),
    Input(
        "allow-all-skipped",
        "report: do not fail when every test was skipped (green needs a test that ran)",
        REPORT,
        kind="bool",
        steps=("report",),
    ),
    # ------------------------------------------------------------ read by the pytest plugin
    Input(
        "artifacts-dir",
        "where failed tests' files go (default: artifacts/ beside the JUnit file)",
        PLUGIN,
        kind="path",
        steps=(),
        action=False,
        plugin=True,
    ),
    Input(
        "connections",
        "the connections.yaml the database fixtures read (prepare sets it)",
        PLUGIN,
        kind="path",
        steps=(),
        action=False,
        plugin=True,
    ),
    Input(
        "pg-connection",
        "the connection pg_schema uses when connections.yaml has several",
        PLUGIN,
        steps=(),
        action=False,
        plugin=True,
    ),
    Input(
        "dbt-project",
        "the dbt project folder of the dbt fixture (or the azpytest_dbt_project ini key)",
        PLUGIN,
        kind="path",
        steps=(),
        action=False,
        plugin=True,
    ),
    Input(
        "migrations",
        "folder of .sql files pg_schema applies once (or the azpytest_migrations ini key)",
        PLUGIN,
        kind="path",
        steps=(),
        action=False,
        plugin=True,
    ),
    Input(
        "role-minutes",
        "minutes the run's database role stays valid (pg_schema; default 360)",
        PLUGIN,
        kind="int",
        default="360",
        minimum=1,
        steps=(),
        action=False,
        plugin=True,
    ),
    # ------------------------------------------------------------ action.yml's own
    Input("upload", "upload artifacts: always, failure or never", ACTION, steps=()),
    Input("artifact-name", "name of the uploaded artifact", ACTION, steps=()),
    Input("python-version", "Python of azpytest's private environment", ACTION, steps=()),
    Input("cache", "restore azpytest's environment from the Actions cache", ACTION, steps=()),
    Input("requirements", "the tests' own dependencies for that environment", ACTION, steps=()),
    Input("merge", "merge mode: a glob of the shards' JUnit files", ACTION, steps=()),
    # ------------------------------------------------------------ the timeout policy (http.py)
    Input(
        "timeout",
        "seconds one call to a service (GitHub OIDC, Entra ID, Key Vault, ARM, the AKS API) "
        "may take with its retries (default 40; each connect at most 10 s, each read 20 s, "
        "at most a third of it)",
        IDENTITY,
        kind="int",
        default="40",
        minimum=1,
        steps=(*STEPS, "kube-token"),
        action=False,
        plugin=True,
    ),
)

BY_NAME = {i.name: i for i in INPUTS}
GROUPS = (IDENTITY, RUN)  # the groups of flags prepare, run, exec and cleanup take


def for_step(step: str) -> tuple[Input, ...]:
    return tuple(i for i in INPUTS if step in i.steps)


def check(spec: Input, value: str | None) -> str | None:
    """The value as given (stripped), or the default; InputError if it is not text any input
    may hold (`check_text`) or a bool, int or choice is not one. Inputs with a grammar of their
    own are checked by their reader."""
    value = value.strip() if value is not None else None
    if not value:
        value = spec.default
    if value is None:
        return None
    check_text(spec.name, value, spec.kind)
    if spec.kind == "bool":
        if value.lower() not in ("true", "false"):
            raise InputError(spec.name, f"{value!r} is not true or false")
        return value.lower()
    if spec.kind == "int":
        try:
            number = int(value)
        except ValueError:
            raise InputError(spec.name, f"{value!r} is not a whole number") from None
        if number < spec.minimum:
            raise InputError(spec.name, f"{number} is less than {spec.minimum}")
        return str(number)
    if spec.kind == "choice" and value.lower() not in spec.choices:
        raise InputError(spec.name, f"{value!r} is not one of {', '.join(spec.choices)}")
    return value.lower() if spec.kind == "choice" else value


def check_text(name: str, value: str, kind: str = "text") -> None:
    """InputError unless `value` is UTF-8 text within the input's size limit, on one line
    (but for YAML), and, for a path, without a part longer than the system takes."""
    bad = next((c for c in value if "\ud800" <= c <= "\udfff"), None)
    if bad is not None:  # os.environ keeps bytes that are not UTF-8 as lone surrogates
        raise InputError(name, "holds bytes that are not UTF-8 text")
    size = len(value.encode("utf-8"))
    limit = YAML_LIMIT if kind in _MULTILINE else TEXT_LIMIT
    if size > limit:
        raise InputError(name, f"is {size} bytes long; the limit is {limit // 1024} KiB")
    allowed = "\t\n\r" if kind in _MULTILINE else ""
    control = next((c for c in value if _is_control(c) and c not in allowed), None)
    if control is not None:
        where = "write it on one line" if control in "\n\r" else "remove it"
        raise InputError(name, f"holds the control character {control!r}; {where}")
    if kind == "path":
        part = next((p for p in value.split("/") if len(p.encode("utf-8")) > NAME_MAX), None)
        if part is not None:
            raise InputError(
                name, f"a part of the path is {len(part.encode())} bytes long; the limit is 255"
            )


def _is_control(c: str) -> bool:
    return c < " " or "\x7f" <= c <= "\x9f"


def raw_value(spec: Input, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable, value) of the first of the input's variables that is set, or None."""
    for variable in spec.variables:
        value = environ.get(variable, "").strip()
        if value:
            return variable, RUNNER_BOOLEANS.get(variable, {}).get(value, value)
    return None


def from_environment(name: str, environ: Mapping[str, str]) -> str | None:
    """One input read from its variables (for the plugin and the report), checked. A bad
    value is named as the user wrote it: the action's input, else the variable."""
    spec = BY_NAME[name]
    found = raw_value(spec, environ)
    variable = found[0] if found else None
    try:
        return check(spec, found[1] if found else None)
    except InputError as exc:
        if spec.action or variable is None:
            raise
        raise InputError(variable, exc.problem) from None


def flag_of(name: str, environ: Mapping[str, str]) -> bool:
    return from_environment(name, environ) == "true"


# ---------------------------------------------------------------------------- grammars


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


def parse_secrets(text: str) -> tuple[SecretSpec, ...]:
    """The `secrets` input: a YAML mapping `ENV_NAME: secret-name`, or a list of secret names
    and prefix globs (`pg-*`, `*`) whose variables are derived (`pg-host` -> `PG_HOST`)."""
    if not text.strip():
        return ()
    data = load_yaml(
        "secrets",
        text,
        "not valid YAML{where}; write `ENV_NAME: secret-name` lines or a list of secret names",
    )
    if isinstance(data, str):
        data = [item for item in re.split(r"[\s,]+", data) if item]
    specs: list[SecretSpec] = []
    if isinstance(data, dict):
        specs.extend(_mapped(env, source) for env, source in data.items())
    elif isinstance(data, list):
        for item in data:
            if isinstance(item, dict) and len(item) == 1:
                ((env, source),) = item.items()
                specs.append(_mapped(env, source))
                continue
            if not isinstance(item, str):
                raise InputError(
                    "secrets", f"{item!r} is not a secret name; quote it (YAML read another type)"
                )
            source = item
            if "*" in source:
                if not _SECRET_GLOB.match(source):
                    raise InputError(
                        "secrets",
                        f"{source!r}: only a prefix glob is supported (`*` or `prefix-*`)",
                    )
                specs.append(SecretSpec(source=source, env=None))
            else:
                _check_secret_name(source)
                _check_target(env_name_for(source), source)
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


def _mapped(env: Any, source: Any) -> SecretSpec:
    """One `ENV_NAME: secret-name` pair of the `secrets` input."""
    if not isinstance(env, str):  # `true: pg-host` would export True
        raise InputError(
            "secrets",
            f"the key {env!r} is not an environment variable name; quote it if it is one "
            "(YAML read another type)",
        )
    if source is not None and not isinstance(source, str):
        raise InputError(
            "secrets", f"{env}: {source!r} is not a secret name; quote it (YAML read another type)"
        )
    source = source or ""
    if not ENV_NAME.match(env):
        raise InputError("secrets", f"{env!r} is not an environment variable name")
    if "*" in source:
        raise InputError(
            "secrets",
            f"{env}: {source!r}: a glob takes many secrets; list "
            f"it (`- {source}`) instead of mapping it",
        )
    _check_secret_name(source)
    _check_target(env, source)
    return SecretSpec(source=source, env=env)


# ---------------------------------------------------------------------------- YAML


def load_yaml(name: str, text: str, invalid: str) -> Any:
    """The YAML input `name`, read by the one loader of azpytest: PyYAML's safe loader that
    refuses anchors and aliases (a few hundred bytes of them expand to gigabytes) and a key
    given twice (YAML would keep the last silently). Any problem is an InputError; `invalid`
    is the text for a document that is not YAML (`{where}` becomes " (line N)")."""
    import yaml  # here: the pytest plugin imports this module at every start-up

    try:
        return yaml.load(text, Loader=_loader())  # a SafeLoader (below)
    except _Refused as exc:
        raise InputError(name, f"{exc.problem} (line {exc.line})") from None
    except RecursionError:
        raise InputError(name, "nested too deeply to read") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        # ValueError: a scalar YAML types but cannot build (a timestamp of month 13).
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise InputError(name, invalid.format(where=where)) from None


class _Refused(Exception):
    def __init__(self, problem: str, line: int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line


@functools.cache
def _loader() -> type[Any]:
    import yaml

    class Loader(yaml.SafeLoader):
        """PyYAML's SafeLoader without anchors, aliases, or a mapping key given twice."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            if getattr(event, "anchor", None) is not None:  # an anchor (&a) or an alias (*a)
                raise _Refused(
                    "YAML anchors and aliases (&name, *name) are not supported; write the "
                    "value out",
                    event.start_mark.line + 1,
                )
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise _Refused(
                            f"the key {key!r} is given twice", key_node.start_mark.line + 1
                        )
                    seen.add(key)
                except TypeError:  # unhashable: the SafeLoader refuses it just below
                    pass
            return super().construct_mapping(node, deep)

    return Loader


# Variables that change how programs start, or which credential the tests use: a vault secret
# must never become one (GITHUB_ENV carries it into every later step of the job; the runner
# refuses only NODE_OPTIONS). Compared case-insensitively; a trailing `*` is a prefix.
DENIED_VARIABLES = (
    *("BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS", "PATH"),
    *("HOME", "LD_*", "DYLD_*", "PYTHON*", "NODE_OPTIONS", "NODE_PATH", "JAVA_TOOL_OPTIONS"),
    *("_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "PERL5*", "RUBYOPT", "RUBYLIB", "GIT_*", "SSH_*"),
    *("GITHUB_*", "RUNNER_*", "ACTIONS_*", "AZPYTEST_*", "IDENTITY_*", "MSI_*"),
    # The Azure SDKs' and the az CLI's credential chain.
    *("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_*"),
    *("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_USERNAME"),
    *("AZURE_PASSWORD", "AZURE_AUTHORITY_HOST", "AZURE_TOKEN_CREDENTIALS", "AZURE_CONFIG_DIR"),
    *("AZURE_ADDITIONALLY_ALLOWED_TENANTS", "AZURE_POD_IDENTITY_AUTHORITY_HOST"),
    "AZURE_REGIONAL_AUTHORITY_NAME",
)


def denied_variable(name: str) -> bool:
    """True for a variable a secret must not land in (DENIED_VARIABLES)."""
    upper = name.upper()
    return any(
        upper.startswith(entry[:-1]) if entry.endswith("*") else upper == entry
        for entry in DENIED_VARIABLES
    )


def _check_target(env: str, source: str) -> None:
    if denied_variable(env):
        raise InputError(
            "secrets",
            f"{env} <- {source}: a secret may not set {env}, which changes how later steps' "
            f"programs start or which credential they use; map it to another name "
            f"(`MY_{env.upper().lstrip('_')}: {source}`)",
        )


def _check_secret_name(name: str) -> None:
    if not SECRET_NAME.match(name):
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
