"""The job's Azure identity and the Key Vault secrets `azpytest prepare` fetched."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from azpytest.plugin.common import fail_diagnosis, prepared, unavailable

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
    record = prepared()
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
