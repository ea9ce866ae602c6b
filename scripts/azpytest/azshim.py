"""az only when used: a shim named `az`, first on the tests' PATH, that logs the real az CLI in
through the job's token broker on its first use and then runs it.

`az login --identity` + `az account set` cost about 0.65 s (and requests to Entra and ARM)
for every `run` and `exec` where az is installed, though most suites never call it. So
`install` writes the shim into the run folder's private `bin` (beside the kubelogin
stand-in) and points az at a private config folder (`AZURE_CONFIG_DIR`, 0700, recorded,
removed at cleanup); the first `az` a test runs (xdist workers at once included: a file
lock) logs in, and every later one goes straight to the real az. A failed login is said once
on stderr, and az then runs on the config it had before (the runner's own login, if any).

The shim is a script that calls `shim` with what it needs baked in (the real az, the
identity, the config folder it owns), so nothing the tests set can point it elsewhere; when
the tests set their own `AZURE_CONFIG_DIR`, it leaves az to them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from azpytest.rundir import AZ_CONFIG, BIN, RunDir

STATE = ".azpytest-login"  # in the config folder: "ok", or why the login failed
LOCK = ".azpytest-login.lock"
SHIM_MARK = "# az shim written by azpytest"


def real_az(path: str | None, ours: Path) -> str | None:
    """The az CLI on `path`, past our own shim's folder."""
    folders = [p for p in (path or "").split(os.pathsep) if p and Path(p) != ours]
    return shutil.which("az", path=os.pathsep.join(folders)) if folders else None


def install(
    run_dir: RunDir,
    env: Mapping[str, str],
    *,
    subscription: str | None,
    client_id: str | None,
    timeout: float,
) -> dict[str, str] | None:
    """Where az is installed, the shim in `<run_dir>/bin` and the command's environment to
    use it (that folder first on PATH, az's private config folder); else None."""
    folder = run_dir.path / BIN
    az = real_az(env.get("PATH"), folder)
    if az is None:
        return None
    config = run_dir.private_folder(AZ_CONFIG)
    folder = run_dir.private_folder(BIN)
    script = folder / "az"
    script.write_text(
        f"#!{sys.executable} -P\n"
        f"{SHIM_MARK}: logs az in through the job's token broker on first use\n"
        "import sys\n"
        "from azpytest.azshim import shim\n"
        f"sys.exit(shim({az!r}, {str(config)!r}, {env.get('AZURE_CONFIG_DIR')!r}, "
        f"{subscription!r}, {client_id!r}, {timeout!r}))\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    path = env.get("PATH", "")
    if not path.startswith(f"{folder}{os.pathsep}"):
        path = f"{folder}{os.pathsep}{path}"
    return {
        **env,
        "PATH": path,
        "AZURE_CONFIG_DIR": str(config),
        "AZURE_CORE_COLLECT_TELEMETRY": "false",
        "AZURE_CORE_NO_COLOR": "true",
    }


def shim(
    az: str,
    config: str,
    config_before: str | None,
    subscription: str | None,
    client_id: str | None,
    timeout: float,
    argv: list[str] | None = None,
) -> int:
    """The `az` the tests run: log in once (under a lock), then become the real az."""
    args = sys.argv[1:] if argv is None else argv
    ours = os.environ.get("AZURE_CONFIG_DIR") == config  # else the tests chose their own
    if ours and not logged_in(az, Path(config), subscription, client_id, timeout):
        # az as it was before azpytest: the runner's own login, if it has one.
        if config_before is None:
            os.environ.pop("AZURE_CONFIG_DIR", None)
        else:
            os.environ["AZURE_CONFIG_DIR"] = config_before
    os.execv(az, [az, *args])
    return 127  # not reached: execv replaced this process or raised


def logged_in(
    az: str, config: Path, subscription: str | None, client_id: str | None, timeout: float
) -> bool:
    """Whether az is logged in through the broker in `config`, logging it in on the first
    call (one login for every process that asks at once); a failure is said once."""
    state = config / STATE
    with _locked(config / LOCK):
        with contextlib.suppress(OSError):
            return state.read_text(encoding="utf-8") == "ok"
        reason = _login(az, subscription, client_id, timeout)
        state.write_text(reason or "ok", encoding="utf-8")
    if reason:
        print(
            f"azpytest: az: left alone (az login --identity through the token broker failed: "
            f"{reason})",
            file=sys.stderr,
            flush=True,
        )
    return not reason


def _login(az: str, subscription: str | None, client_id: str | None, timeout: float) -> str:
    """`az login --identity` against the broker (and `az account set`); why it failed, or
    an empty text."""
    command = [az, "login", "--identity", "--allow-no-subscriptions", "--output", "none"]
    if client_id:
        command += ["--client-id", client_id]
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["no message"])[-1]
    if subscription:
        # Bounded; a hang or failure here leaves az on its default subscription.
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(
                [az, "account", "set", "--subscription", subscription],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
    return ""


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
