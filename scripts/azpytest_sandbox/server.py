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
from .scenario import GITHUB_ISSUER, Fault, Scenario, build_scenario
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
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
