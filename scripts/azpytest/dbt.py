"""Run dbt in a subprocess against the prepared profile and say what happened.

`run_dbt(["build"], project_dir=..., profiles_dir=...)` runs `dbt build --project-dir ...
--profiles-dir ... [--target T]` (the `dbt` installed next to this Python, else the one on
PATH; never through a shell) with `DO_NOT_TRACK=1`, no colours, and its target and log folders
under `output_dir` (default: the project's `target/`). It returns a `DbtResult`: the exit code,
the parsed `run_results.json` (None when dbt stopped before writing one), the log file, dbt's
own error lines and the console output.

Secrets reach dbt only through its environment, never its arguments. When the profiles folder
holds the `connections.yaml` that `azpytest prepare` wrote and its dbt target logs in with
Entra (`auth: entra`), `run_dbt` asks the credential for a fresh access token for every dbt
invocation and hands it over as `AZPYTEST_<CONNECTION>_TOKEN` (and `..._TOKEN_EXPIRES_ON`),
the variables the profiles.yml target reads. A token already in `env` is used as it is only
when it was set by hand (no `..._EXPIRES_ON` beside it): one that azpytest fetched earlier (an
`azpytest exec` around this process) is replaced, so each dbt invocation starts with a fresh
token however long the run has been going.

Every other variable that profile reads (`env_var('AZPYTEST_...')` without a default) must be
set before dbt starts: dbt 1.11 renders a missing one in `password` as the literal text and
fails later with a login error that names nothing. `profile_environment` checks them and
raises `ProfileVariableMissing` (one line naming the variable and how to provide it);
`run_dbt` and `azpytest exec -- dbt ...` call it before dbt starts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azpytest import errors, profiles

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

LOG_FILE = "dbt.log"
RUN_RESULTS = "run_results.json"

# dbt starts its console lines with the time ("12:34:56  "); detail lines have none.
_TIMESTAMP = re.compile(r"^\d{2}:\d{2}:\d{2}(?:\.\d+)?\s{1,2}")
_COMPLETED_WITH_ERRORS = re.compile(r"^Completed with \d+ errors?\b")
_ERROR_HEAD = re.compile(r"\b(Database|Compilation|Runtime|Parsing|Dependency) Error\b")
_FALLBACK_LINES = 5


class DbtNotFound(RuntimeError):
    """No dbt executable next to this Python or on PATH."""


class ProfileVariableMissing(RuntimeError):
    """A variable the written profile reads is unset; the message is one line naming it."""


_ENV_VAR = re.compile(r"env_var\('([A-Za-z_][A-Za-z0-9_]*)'\)")  # no default: required


@dataclass(frozen=True)
class DbtResult:
    returncode: int
    run_results: dict[str, Any] | None  # target/run_results.json of this invocation
    log_path: Path  # dbt's log file
    error_lines: tuple[str, ...]  # dbt's own error text, compacted; empty on success
    stdout: str  # the console output (stderr folded in)
    command: tuple[str, ...] = ()  # the argv that ran (it never holds a secret)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def statuses(self) -> dict[str, str]:
        """`unique_id -> status` from run_results.json (`success` for models and seeds,
        `pass`/`fail`/`error` for tests)."""
        results = (self.run_results or {}).get("results") or []
        return {str(r.get("unique_id")): str(r.get("status")) for r in results}


def find_dbt() -> str:
    """The dbt of this environment (next to sys.executable), else the first on PATH."""
    beside = Path(sys.executable).parent / ("dbt.exe" if os.name == "nt" else "dbt")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("dbt")
    if found is None:
        raise DbtNotFound(errors.DBT_NOT_INSTALLED)
    return found


def run_dbt(
    args: Sequence[str],
    *,
    project_dir: str | os.PathLike[str],
    profiles_dir: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    target: str | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    credential: TokenCredential | None = None,
    timeout: float | None = None,
) -> DbtResult:
    """Run `dbt ARGS` for the project with the profiles folder; see the module docstring.

    `env` is dbt's whole environment (default: this process's). `credential` gives the
    Entra token of an `auth: entra` target (default: the credential `azpytest prepare`
    would choose from that environment). A timeout raises subprocess.TimeoutExpired.
    """
    project = Path(project_dir)
    output = Path(output_dir) if output_dir is not None else project / "target"
    logs = output / "logs"
    child = dict(os.environ if env is None else env)
    child.update(
        {
            "DO_NOT_TRACK": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "DBT_USE_COLORS": "false",
            "DBT_TARGET_PATH": str(output),
            "DBT_LOG_PATH": str(logs),
        }
    )
    command = [find_dbt(), *args, "--project-dir", str(project)]
    command += ["--profiles-dir", str(profiles_dir)]
    if target is not None:
        command += ["--target", target]
    child.update(profile_environment(Path(profiles_dir), child, credential))
    (output / RUN_RESULTS).unlink(missing_ok=True)  # never report an earlier run's results
    began = time.monotonic()
    proc = subprocess.run(
        command,
        env=child,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )
    return DbtResult(
        returncode=proc.returncode,
        run_results=_run_results(output / RUN_RESULTS),
        log_path=logs / LOG_FILE,
        error_lines=error_lines(proc.stdout) if proc.returncode != 0 else (),
        stdout=proc.stdout,
        command=tuple(command),
        seconds=time.monotonic() - began,
    )


def profile_environment(
    profiles_dir: Path, environ: Mapping[str, str], credential: TokenCredential | None = None
) -> dict[str, str]:
    """What dbt needs added to `environ` for the profile `azpytest prepare` wrote in
    `profiles_dir`: an `auth: entra` target's token, fetched now. Any other variable the
    profile reads and `environ` lacks raises ProfileVariableMissing. A folder without
    azpytest's connections.yaml holds a profile of the user's own: nothing is checked."""
    connections = profiles_dir / profiles.CONNECTIONS_FILE
    written = profiles_dir / profiles.PROFILES_FILE
    if not connections.is_file() or not written.is_file():
        return {}
    token = profiles.dbt_token(connections)
    sources = profiles.variable_sources(connections)
    for name in _ENV_VAR.findall(written.read_text(encoding="utf-8")):
        if name not in environ and (token is None or name != token[0]):
            connection, field, secret = sources.get(name, (None, None, None))
            raise ProfileVariableMissing(
                errors.dbt_variable_unset(str(written), name, connection, field, secret)
            )
    return _entra_token(profiles_dir, environ, credential)


def _entra_token(
    profiles_dir: Path, environ: Mapping[str, str], credential: TokenCredential | None
) -> dict[str, str]:
    """The token variables of an `auth: entra` dbt target, fetched now (none otherwise)."""
    connections = profiles_dir / profiles.CONNECTIONS_FILE
    if not connections.is_file():
        return {}
    need = profiles.dbt_token(connections)
    if need is None:
        return {}
    if environ.get(need[0]) and not environ.get(f"{need[0]}_EXPIRES_ON"):
        return {}  # a token set by hand (no expiry beside it): dbt uses it as it is
    variable, scope = need
    if credential is not None:
        token = credential.get_token(scope)
    else:
        from azpytest import identity, settings
        from azpytest.github import Workflow

        who = identity.build(settings.load({}, environ), Workflow(environ))
        try:
            token = who.get_token(scope)  # masked; an Entra refusal raises a Diagnosis
        finally:
            who.close()
    return {variable: token.token, f"{variable}_EXPIRES_ON": str(int(token.expires_on))}


def _run_results(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def error_lines(output: str) -> tuple[str, ...]:
    """dbt's own error text from its console output, one stripped line each, in order.

    The lines after "Completed with N error(s)" (up to "Done."), else those after
    "Encountered an error:", else each "Database/Compilation/Runtime Error" line and the
    detail lines under it; failing all three, the last lines of the output.
    """
    lines = [_TIMESTAMP.sub("", line).rstrip() for line in output.splitlines()]
    picked: list[str] = []
    start = next((i for i, line in enumerate(lines) if _COMPLETED_WITH_ERRORS.match(line)), None)
    if start is None:
        start = next((i for i, line in enumerate(lines) if line == "Encountered an error:"), None)
    if start is not None:
        for line in lines[start + 1 :]:
            if line.startswith("Done. "):
                break
            picked.append(line)
    else:
        detail = False
        for raw, line in zip(output.splitlines(), lines, strict=True):
            if _ERROR_HEAD.search(line):
                picked.append(line)
                detail = True
            elif detail and raw[:1].isspace():
                picked.append(line)
            else:
                detail = False
    compact: list[str] = []
    for line in picked:
        text = line.strip()
        if text and text != "^" and (not compact or compact[-1] != text):
            compact.append(text)
    if not compact:
        compact = [line.strip() for line in lines if line.strip()][-_FALLBACK_LINES:]
    return tuple(compact)
