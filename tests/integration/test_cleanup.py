"""`azpytest cleanup` deletes exactly what the run folder's record lists, whichever process
made it, refuses a folder azpytest did not make, and reads no input but the run folder."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from azpytest.rundir import RunDir


def cleanup(run_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AZPYTEST_", "GITHUB_"))}
    return subprocess.run(
        [sys.executable, "-m", "azpytest", "cleanup", "--run-dir", str(run_dir)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=run_dir.parent,
    )


def test_a_credential_file_made_through_the_owner_is_gone_and_results_stay(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "run")
    secret = run_dir.write_private("kubeconfig", "token: s3cr3t-value\n")
    az = run_dir.private_folder("az")
    (az / "msal_token_cache.json").write_text("{}")
    junit = run_dir.junit
    junit.write_text("<testsuites/>")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(run_dir.path.stat().st_mode) == 0o700

    done = cleanup(run_dir.path)

    assert done.returncode == 0, done.stderr
    assert not secret.exists() and not az.exists()
    assert junit.read_text() == "<testsuites/>"
    assert f"azpytest: cleanup of {run_dir.path}: removed kubeconfig, az/; kept junit.xml" in (
        done.stdout
    )


def test_a_folder_azpytest_did_not_make_is_refused_and_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "kubeconfig").write_text("mine")
    (foreign / ".azpytest-credentials").write_text("kubeconfig\n")

    done = cleanup(foreign)

    assert done.returncode == 2
    assert done.stderr == (
        f"azpytest cleanup: error: run-dir: {foreign} has no .azpytest-run marker: azpytest did "
        "not make it, so cleanup removes nothing there (pass the run-dir that prepare printed)\n"
    )
    assert (foreign / "kubeconfig").read_text() == "mine"


def test_an_invalid_unrelated_input_never_stops_the_cleaning(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "run")
    profiles = run_dir.write_private("profiles.yml", "password: x\n")
    (tmp_path / ".env").write_bytes(b"\xff\xfe not utf-8 \x00")

    done = cleanup(
        run_dir.path,
        AZPYTEST_SECRETS="{unclosed: [yaml",
        AZPYTEST_SHARD_INDEX="seven",
        AZPYTEST_CLOUD="Mars",
        GITHUB_ACTIONS="true",
    )

    assert done.returncode == 0, done.stderr
    assert not profiles.exists()


def test_the_record_cannot_lead_cleanup_out_of_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.write_text("keep")
    run_dir = RunDir(tmp_path / "run").create()
    (run_dir.path / ".azpytest-credentials").write_text("../precious\n")

    done = cleanup(run_dir.path)

    assert done.returncode == 0, done.stderr
    assert outside.read_text() == "keep"


def test_a_run_folder_that_was_never_made_is_nothing_to_clean(tmp_path: Path) -> None:
    done = cleanup(tmp_path / "never")

    assert done.returncode == 0
    assert "does not exist; nothing to remove" in done.stdout


def test_every_subcommand_has_its_help(tmp_path: Path) -> None:
    for command in ("prepare", "run", "exec", "cleanup", "kube-token", "report", "sandbox"):
        done = subprocess.run(
            [sys.executable, "-m", "azpytest", command, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (command, done.stderr)
        assert done.stdout.startswith(f"usage: azpytest {command}"), command
