"""The sandbox as one object: start every stand-in, hand out the environment, stop cleanly."""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

import certifi
import trustme

from .arm import ARM
from .entra import AUTHORITY_HOSTS, Entra
from .github import ISSUER_HOST, GitHubOIDC
from .httpd import FaultBook, RequestLog, SandboxHTTPServer, Service
from .keyvault import VAULT_SUFFIXES, KeyVault
from .kubeapi import KubeAPIServer
from .ldap import LdapResponder
from .proxy import ConnectProxy
from .scenario import GITHUB_ISSUER, Fault, Scenario, build_scenario, publish_secret
from .sqlserver import SQL_SUFFIXES, SqlServerStandIn
from .tokens import SigningKey

ARM_HOSTS = ("management.azure.com", "management.usgovcloudapi.net", "management.chinacloudapi.cn")
_SYSTEM_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


class Sandbox:
    """GitHub OIDC, Entra ID, Key Vault, ARM and AKS API stand-ins behind a CONNECT proxy.

    Also an LDAP responder that lets a real PostgreSQL take Entra access tokens as passwords
    (``ldap_hba_line`` is the pg_hba.conf line that uses it).

    >>> with Sandbox() as sandbox:
    ...     env = sandbox.env   # HTTPS_PROXY, REQUESTS_CA_BUNDLE, ACTIONS_ID_TOKEN_REQUEST_* ...
    """

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        latency_ms: int = 0,
        log_sink: IO[str] | None = None,
    ) -> None:
        self.scenario = scenario if scenario is not None else build_scenario({})
        self.log = RequestLog(log_sink)
        self.faults = FaultBook(self.scenario.faults, latency_ms)
        self._stopping = threading.Event()
        self._dir: Path | None = None
        self._front: SandboxHTTPServer | None = None
        self._proxy: ConnectProxy | None = None
        self.ldap: LdapResponder | None = None
        self.clusters: dict[tuple[str, str, str], KubeAPIServer] = {}
        self.sql_servers: dict[str, SqlServerStandIn] = {}
        self.env: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Sandbox:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="azpytest-sandbox-"))
        self.ca = trustme.CA(organization_name="azpytest sandbox")
        hosts = [
            *AUTHORITY_HOSTS,
            *ARM_HOSTS,
            ISSUER_HOST,
            *(f"*{suffix}" for suffix in VAULT_SUFFIXES),
            "localhost",
            "127.0.0.1",
        ]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert(*hosts).configure_cert(context)

        self.github_key = SigningKey.generate()
        self.entra_key = SigningKey.generate()
        self.request_token = secrets.token_urlsafe(32)
        self.github = GitHubOIDC(self.scenario, self.github_key, self.request_token)
        self.entra = Entra(self.scenario, self.entra_key, {GITHUB_ISSUER: self.github_key})
        self.keyvault = KeyVault(self.scenario, self.entra)
        self.ldap = LdapResponder(self.entra, self.log, self.faults).start()
        for sub in self.scenario.subscriptions:
            for group in sub.resource_groups.values():
                for cluster in group.clusters.values():
                    server = KubeAPIServer(
                        cluster,
                        sub.tenant_id,
                        self.entra,
                        self.ca,
                        self.log,
                        self.faults,
                        self._stopping,
                    )
                    server.start()
                    self.clusters[(sub.id, group.name.lower(), cluster.name.lower())] = server
        self._start_sql()
        self.arm = ARM(self.scenario, self.entra, self._cluster_server)
        self.services: list[Service] = [self.github, self.entra, self.keyvault, self.arm]

        self._front = SandboxHTTPServer(context, self.route, self.log, self.faults, self._stopping)
        self._front.serve_in_thread("sandbox-https")
        self._proxy = ConnectProxy(
            lambda host: self.route(host) is not None, self._front.port, self._stopping
        )
        self._proxy.serve_in_thread()

        ca_pem = self.ca.cert_pem.bytes()
        self.ca_path = self._dir / "sandbox-ca.pem"
        self.ca_path.write_bytes(ca_pem)
        # The system's roots plus ours, so tunnelled hosts (PyPI) still verify under it.
        self.ca_bundle = self._dir / "ca-bundle.pem"
        system = next(
            (Path(p) for p in _SYSTEM_BUNDLES if Path(p).is_file()), Path(certifi.where())
        )
        self.ca_bundle.write_bytes(system.read_bytes().rstrip(b"\n") + b"\n" + ca_pem)

        proxy_url = f"http://127.0.0.1:{self._proxy.port}"
        self.env = {
            "HTTPS_PROXY": proxy_url,
            "https_proxy": proxy_url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
            "SSL_CERT_FILE": str(self.ca_bundle),
            "CURL_CA_BUNDLE": str(self.ca_bundle),
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.github.request_url(self._front.port),
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token,
        }
        app = self.scenario.default_app
        if app is not None:
            self.env["AZURE_TENANT_ID"] = app.tenant_id
            self.env["AZURE_CLIENT_ID"] = app.client_id
        if self.scenario.subscriptions:
            self.env["AZURE_SUBSCRIPTION_ID"] = self.scenario.subscriptions[0].id

    def stop(self) -> None:
        self._stopping.set()
        for server in (self._proxy, self._front):
            if server is not None:
                server.shutdown()
                server.server_close()
        self._proxy = self._front = None
        if self.ldap is not None:
            self.ldap.stop()
            self.ldap = None
        for cluster in self.clusters.values():
            cluster.stop()
        self.clusters.clear()
        for sql in self.sql_servers.values():
            sql.stop()
        self.sql_servers.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_sql(self) -> None:
        """The Azure SQL stand-ins, TLS 1.2 as Azure SQL's TDS 7.4 logins use, with a
        certificate for every cloud's server names and 127.0.0.1; each server's address goes
        into its vault as sql-host, sql-port and sql-database. The host is `localhost`: ODBC
        Driver 18 checks the certificate's DNS names only (an IP address never matches), and
        it trusts the CA through SSL_CERT_FILE, which the sandbox's environment sets."""
        if not self.scenario.sql_servers:
            return
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        self.ca.issue_cert(
            *(f"*{suffix}" for suffix in SQL_SUFFIXES.values()), "localhost", "127.0.0.1"
        ).configure_cert(context)
        for server in self.scenario.sql_servers:
            stand_in = SqlServerStandIn(server, self.entra, context, self.log, self.faults).start()
            self.sql_servers[server.name] = stand_in
            vault = self.scenario.vaults.get((server.vault or "").lower())
            if vault is not None:
                publish_secret(vault, "sql-host", "localhost")
                publish_secret(vault, "sql-port", str(stand_in.port))
                first = next(iter(server.databases.values()), None)
                if first is not None:
                    publish_secret(vault, "sql-database", first.name)

    def sql_server(self, name: str | None = None) -> SqlServerStandIn:
        """A running Azure SQL stand-in (the only one when `name` is None)."""
        if name is None:
            assert len(self.sql_servers) == 1, f"name one of {sorted(self.sql_servers)}"
            return next(iter(self.sql_servers.values()))
        return self.sql_servers[name]

    # ------------------------------------------------------------------ routing

    def route(self, host: str) -> Service | None:
        for service in self.services:
            if service.serves(host):
                return service
        return None

    def _cluster_server(self, subscription: str, group: str, cluster: str) -> KubeAPIServer | None:
        return self.clusters.get((subscription.lower(), group.lower(), cluster.lower()))

    # ------------------------------------------------------------------ for tests and the demo

    @property
    def proxy_port(self) -> int:
        assert self._proxy is not None, "the sandbox is not running"
        return self._proxy.port

    @property
    def ldap_port(self) -> int:
        assert self.ldap is not None, "the sandbox is not running"
        return self.ldap.port

    @property
    def ldap_hba_line(self) -> str:
        """pg_hba.conf line: PostgreSQL logins from 127.0.0.1 take Entra access tokens."""
        assert self.ldap is not None, "the sandbox is not running"
        return self.ldap.hba_line

    def add_fault(self, **rule: Any) -> Fault:
        from .scenario import parse_fault

        return self.faults.add(parse_fault(rule))

    def apply(self, environ: dict[str, str] | os._Environ[str]) -> None:
        environ.update(self.env)
