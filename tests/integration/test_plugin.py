"""The pytest plugin as users meet it, run with pytester: fixtures, skip/fail texts, options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from azpytest.rundir import RunDir
from azpytest_sandbox import Sandbox

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("AZPYTEST_", "AZURE_", "ACTIONS_ID_TOKEN", "GITHUB_")) or name in (
            "CI",
            "KUBECONFIG",
        ):
            monkeypatch.delenv(name)
    return monkeypatch


def test_plugin_registers_marker_and_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.integration: the test uses real Azure or database resources*"]
    )
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--azpytest-debug*log azure-core HTTP requests*"])


def test_a_suite_keeps_its_own_options_of_common_names(pytester: pytest.Pytester) -> None:
    # The plugin loads into every pytest run: every option it adds is under --azpytest-.
    pytester.makeconftest(
        """
        def pytest_addoption(parser):
            parser.addoption("--integration-debug", action="store_true")
            parser.addoption("--debug-mode", action="store_true")
        """
    )
    pytester.makepyfile(
        "def test_it(request):\n    assert request.config.getoption('integration_debug')\n"
    )
    result = pytester.runpytest("--integration-debug")
    result.assert_outcomes(passed=1)


def test_plugin_is_inert_without_configuration(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        (
            "keyvault",
            "azpytest: no Key Vault secrets were prepared; run `azpytest prepare` with key-vault and secrets set",
        ),
        (
            "kubeconfig",
            "azpytest: no AKS kubeconfig was prepared; set aks-resource-group and aks-cluster for `azpytest prepare`",
        ),
        (
            "real_aks_cluster",
            "azpytest: no AKS kubeconfig was prepared; set aks-resource-group and aks-cluster for `azpytest prepare`",
        ),
        (
            "ensure_kubeconfig",
            "azpytest: no AKS kubeconfig was prepared; set aks-resource-group and aks-cluster for `azpytest prepare`",
        ),
        (
            "dbt",
            "azpytest: no dbt project configured; set azpytest_dbt_project in pytest.ini or AZPYTEST_DBT_PROJECT",
        ),
        (
            "kube_namespace",
            "azpytest: no AKS kubeconfig was prepared; set aks-resource-group and aks-cluster for `azpytest prepare`",
        ),
        (
            "pg_schema",
            "azpytest: no connections were prepared (AZPYTEST_CONNECTIONS is not set); set the profiles input of `azpytest prepare`",
        ),
        (
            "db_connection",
            "azpytest: no connections were prepared (AZPYTEST_CONNECTIONS is not set); set the profiles input of `azpytest prepare`",
        ),
    ],
)
def test_missing_configuration_skips_locally_and_fails_in_ci(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, fixture: str, reason: str
) -> None:
    pytester.makepyfile(f"def test_needs_it({fixture}):\n    pass\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"SKIPPED*{reason}"])
    clean_env.setenv("CI", "true")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{reason} (failing rather than skipping because CI=true)"])


def test_azure_credential_in_ci_mode_gets_tokens_from_github_oidc(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, sandbox: Sandbox
) -> None:
    for name, value in sandbox.env.items():
        clean_env.setenv(name, value)
    clean_env.setenv("GITHUB_ACTIONS", "true")
    clean_env.setenv("CI", "true")
    pytester.makepyfile(
        """
        from azure.keyvault.secrets import SecretClient

        def test_reads_a_secret(azure_credential, azure_token):
            assert azure_token("https://management.azure.com/.default").startswith("eyJ")
            client = SecretClient("https://kv-azpytest.vault.azure.net", azure_credential)
            assert client.get_secret("pg-user").value == "app"
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert len(sandbox.log.select(service="github")) >= 1  # the credential asked GitHub


def test_entra_refusal_fails_the_test_with_the_diagnosis(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, make_sandbox: Callable[..., Sandbox]
) -> None:
    sandbox = make_sandbox({"github": {"environment": "staging"}})
    for name, value in sandbox.env.items():
        clean_env.setenv(name, value)
    clean_env.setenv("GITHUB_ACTIONS", "true")
    pytester.makepyfile(
        """
        def test_token(azure_token):
            azure_token("https://vault.azure.net/.default")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Entra ID found no federated credential on app 3f1e2d4c-6b5a-4978-8a9b-0c1d2e3f4a5b for this job (AADSTS70021).",
            "*assertion subject   repo:octo-org/octo-repo:environment:staging",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_keyvault_fixture_reads_prepared_secrets(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "prepared.json").write_text(
        json.dumps({"secrets": [{"name": "pg-host", "env": "DB_HOST"}], "masked_env": ["DB_HOST"]})
    )
    clean_env.setenv("AZPYTEST_RUN_DIR", str(run_dir))
    clean_env.setenv("DB_HOST", "db.internal")
    pytester.makepyfile(
        """
        def test_value(keyvault, keyvault_secret):
            assert keyvault["pg-host"] == "db.internal"
            assert keyvault_secret("pg-host") == "db.internal"
            assert keyvault.names() == ["pg-host"]

        def test_unknown(keyvault_secret):
            keyvault_secret("pg-pass")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*azpytest: secret 'pg-pass' was not prepared; add it to the secrets input (prepared: pg-host)"
        ]
    )


def prepared_secret(env: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str) -> None:
    """A run folder whose prepared.json lists `name` as masked, and its value set, as
    `azpytest prepare` leaves them for the test process."""
    run_dir = RunDir(tmp_path / "run")
    run_dir.write_prepared({"secrets": [], "masked_env": [name]})
    env.setenv("AZPYTEST_RUN_DIR", str(run_dir.path))
    env.setenv(name, value)


def test_debug_log_masks_prepared_values(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prepared_secret(clean_env, tmp_path, "PG_PASSWORD", "s3cr3t-Pa55word")
    pytester.makepyfile(
        """
        import logging
        import os

        def test_connects():
            password = os.environ["PG_PASSWORD"]
            logging.getLogger("azpytest.db").debug("connecting with password=%s", password)
        """
    )
    result = pytester.runpytest_subprocess("--azpytest-debug", "-s")
    result.assert_outcomes(passed=1)
    result.stderr.fnmatch_lines(["* azpytest.db DEBUG connecting with password=***"])
    assert "s3cr3t-Pa55word" not in result.stdout.str() + result.stderr.str()


def test_plugin_adds_little_to_pytest_startup() -> None:
    """The plugin module imports nothing heavy (the figure itself lives in bench/)."""
    code = (
        "import sys, azpytest.plugin; heavy = [m for m in ('azure.identity', 'kubernetes', "
        "'requests', 'azure.keyvault.secrets', 'psycopg', 'yaml') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_skip_or_xfail_reason_with_a_masked_value_keeps_pytests_outcome(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prepared_secret(clean_env, tmp_path, "DB_HOST", "warehouse-7f3a.internal")
    pytester.makepyfile(
        """
        import os
        import pytest

        def test_skipped():
            pytest.skip(f"{os.environ['DB_HOST']} unreachable")

        @pytest.mark.skipif(True, reason=os.environ["DB_HOST"] + " is down")
        def test_skipif():
            pass

        def test_xfail():
            pytest.xfail(f"{os.environ['DB_HOST']} flaky")

        def test_passes():
            pass
        """
    )
    junit = tmp_path / "junit.xml"
    result = pytester.runpytest_subprocess("-rsx", f"--junitxml={junit}")
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] *: *** unreachable", "XFAIL *::test_xfail*"])
    written = result.stdout.str() + result.stderr.str() + junit.read_text()
    assert "warehouse-7f3a" not in written
    assert junit.read_text().count("<skipped") == 3


def test_a_parametrize_id_made_from_a_masked_value_is_replaced_at_the_source(
    pytester: pytest.Pytester, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prepared_secret(clean_env, tmp_path, "DB_HOST", "warehouse-7f3a.internal")
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.mark.parametrize("host", [os.environ["DB_HOST"], "localhost"])
        def test_reach(host):
            assert host == "localhost"
        """
    )
    junit = tmp_path / "junit.xml"
    durations = tmp_path / "durations.json"
    result = pytester.runpytest_subprocess(
        "-v", f"--junitxml={junit}", "--store-durations", f"--durations-path={durations}"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*::test_reach[[]host-secret-*[]] FAILED*"])
    cache = pytester.path / ".pytest_cache"
    written = (
        result.stdout.str()
        + result.stderr.str()
        + junit.read_text()
        + durations.read_text()
        + "".join(p.read_text() for p in cache.rglob("*") if p.is_file())
    )
    assert "warehouse-7f3a" not in written
    result.stdout.fnmatch_lines(["*::test_reach[[]localhost[]] PASSED*"])  # others unchanged
