"""Azure's constants, once: the clouds and their endpoints and scopes, the AKS server app, the
GitHub OIDC audience Entra expects, and the ODBC attribute that carries an Entra token."""

from __future__ import annotations

from dataclasses import dataclass

# The audience of the GitHub OIDC token that Entra's federated credentials expect by default.
DEFAULT_AUDIENCE = "api://AzureADTokenExchange"
# The Entra app every AKS-managed Entra cluster's API server takes tokens for (every cloud).
AKS_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
AKS_SCOPE = f"{AKS_SERVER_ID}/.default"
# ODBC's SQL_COPT_SS_ACCESS_TOKEN: the pre-connect attribute that carries an Entra token.
SQL_COPT_SS_ACCESS_TOKEN = 1256


@dataclass(frozen=True)
class Cloud:
    name: str
    authority_host: str
    arm_endpoint: str
    vault_suffix: str
    database_suffix: str  # Azure SQL and the OSS databases: database.windows.net, ...

    @property
    def arm_scope(self) -> str:
        return f"{self.arm_endpoint}/.default"

    @property
    def vault_scope(self) -> str:
        return f"https://vault{self.vault_suffix.removeprefix('.vault')}/.default"

    @property
    def sql_scope(self) -> str:
        """Azure SQL (and Fabric's SQL endpoints)."""
        return f"https://{self.database_suffix}/.default"

    @property
    def postgres_scope(self) -> str:
        """Azure Database for PostgreSQL (and MySQL): the `ossrdbms-aad` resource."""
        return f"https://ossrdbms-aad.{self.database_suffix}/.default"

    def token_scope(self, kind: str) -> str:
        """The default scope of a connection kind of the profiles input."""
        return self.postgres_scope if kind == "postgres" else self.sql_scope


CLOUDS = {
    "azurecloud": Cloud(
        "AzureCloud",
        "login.microsoftonline.com",
        "https://management.azure.com",
        ".vault.azure.net",
        "database.windows.net",
    ),
    "azureusgovernment": Cloud(
        "AzureUSGovernment",
        "login.microsoftonline.us",
        "https://management.usgovcloudapi.net",
        ".vault.usgovcloudapi.net",
        "database.usgovcloudapi.net",
    ),
    "azurechinacloud": Cloud(
        "AzureChinaCloud",
        "login.chinacloudapi.cn",
        "https://management.chinacloudapi.cn",
        ".vault.azure.cn",
        "database.chinacloudapi.cn",
    ),
}
PUBLIC = CLOUDS["azurecloud"]
