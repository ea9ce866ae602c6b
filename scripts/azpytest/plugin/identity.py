"""The job's Azure identity and the Key Vault secrets `azpytest prepare` fetched."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from azpytest import errors
from azpytest.plugin.common import fail_diagnosis, prepared, skip_or_fail

if TYPE_CHECKING:
    from azpytest.identity import Identity


@pytest.fixture(scope="session")
def azure_credential() -> Iterator[Identity]:
    """The credential `azpytest prepare` chose: GitHub OIDC in Actions (renewing), else
    DefaultAzureCredential. An Azure SDK TokenCredential."""
    from azpytest import identity, settings
    from azpytest.github import Workflow

    try:
        loaded = settings.load({}, os.environ)
    except settings.InputError as exc:
        skip_or_fail(errors.no_identity(exc))
    who = identity.build(loaded, Workflow(os.environ, out=sys.__stdout__))
    yield who
    who.close()


@pytest.fixture(scope="session")
def azure_token(azure_credential: Identity) -> Callable[[str], str]:
    """`azure_token(scope)`: a current access token for the scope (renewed as needed)."""

    def token(scope: str) -> str:
        try:
            return azure_credential.get_token(scope).token
        except errors.Diagnosis as exc:
            fail_diagnosis(exc)

    return token


@dataclass(frozen=True)
class PreparedSecrets:
    """The Key Vault secrets `azpytest prepare` fetched, by secret name (values from the
    environment the action gave this step)."""

    env_by_name: dict[str, str]

    def __getitem__(self, name: str) -> str:
        env = self.env_by_name.get(name)
        if env is None:
            raise KeyError(errors.secret_not_prepared(name, self.env_by_name))
        value = os.environ.get(env)
        if value is None:
            raise KeyError(errors.secret_variable_unset(name, env))
        return value

    def __contains__(self, name: object) -> bool:
        return name in self.env_by_name

    def names(self) -> list[str]:
        return sorted(self.env_by_name)


@pytest.fixture(scope="session")
def keyvault() -> PreparedSecrets:
    record = prepared()
    if not record.get("secrets"):
        skip_or_fail(errors.NO_SECRETS_PREPARED)
    return PreparedSecrets({s["name"]: s["env"] for s in record["secrets"]})


@pytest.fixture(scope="session")
def keyvault_secret(keyvault: PreparedSecrets) -> Callable[[str], str]:
    def secret(name: str) -> str:
        try:
            return keyvault[name]
        except KeyError as exc:
            pytest.fail(errors.fixture_failed(exc.args[0]), pytrace=False)

    return secret
