"""`make demo`: the whole flow on this machine, against the sandbox and a throwaway PostgreSQL.

Run inside `azpytest sandbox -- ...`, so only standard environment points the real clients at
the stand-ins: HTTPS_PROXY, REQUESTS_CA_BUNDLE and ACTIONS_ID_TOKEN_REQUEST_*. Every secret
value is shown masked, as the action masks it.
"""

from __future__ import annotations

import base64
import os
import sys
import tempfile
import time
from pathlib import Path

import jwt
import requests
import yaml
from azure.identity import ClientAssertionCredential
from azure.keyvault.secrets import SecretClient

from azpytest.sandbox.postgres import TempPostgres

VAULT = "https://kv-azpytest.vault.azure.net"
CLUSTER = (
    "/subscriptions/{sub}/resourceGroups/rg-azpytest/providers/"
    "Microsoft.ContainerService/managedClusters/aks-azpytest"
)
AKS_SERVER_APP = "6dae42f8-4368-4678-94ff-3960e28e3630"


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def github_assertion() -> str:
    """A fresh GitHub OIDC token, asked for every time Entra needs an assertion."""
    url = os.environ["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=api%3A%2F%2FAzureADTokenExchange"
    headers = {"Authorization": f"Bearer {os.environ['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"}
    answer = requests.get(url, headers=headers, timeout=10)
    answer.raise_for_status()
    return str(answer.json()["value"])


def main() -> int:
    started = time.perf_counter()
    step("GitHub OIDC: the job's identity token (claims only; the token itself is never printed)")
    claims = jwt.decode(github_assertion(), options={"verify_signature": False})
    for name in ("iss", "sub", "aud", "job_workflow_ref"):
        print(f"  {name:17} {claims[name]}")
    print(f"  lifetime          {claims['exp'] - claims['iat']} s")

    step("Entra ID: the assertion traded for access tokens (workload identity federation)")
    credential = ClientAssertionCredential(
        os.environ["AZURE_TENANT_ID"], os.environ["AZURE_CLIENT_ID"], github_assertion
    )
    token = credential.get_token("https://vault.azure.net/.default")
    access = jwt.decode(token.token, options={"verify_signature": False})
    print(f"  vault token for appid={access['appid']} oid={access['oid']}")
    print(f"  expires in {token.expires_on - int(time.time())} s")

    step("Key Vault: connection metadata (values masked)")
    vault = SecretClient(VAULT, credential)
    secrets = {
        p.name: vault.get_secret(p.name).value or "" for p in vault.list_properties_of_secrets()
    }
    for name, value in sorted(secrets.items()):
        print(f"  {name:12} *** ({len(value)} characters)")

    step("ARM: the AKS cluster's kubeconfig (kubelogin exec, as AKS returns it)")
    arm_token = credential.get_token("https://management.azure.com/.default").token
    url = "https://management.azure.com" + CLUSTER.format(sub=os.environ["AZURE_SUBSCRIPTION_ID"])
    answer = requests.post(
        f"{url}/listClusterUserCredential?api-version=2025-10-01",
        headers={"Authorization": f"Bearer {arm_token}"},
        timeout=10,
    )
    answer.raise_for_status()
    kubeconfig = yaml.safe_load(base64.b64decode(answer.json()["kubeconfigs"][0]["value"]))
    cluster = kubeconfig["clusters"][0]["cluster"]
    user = kubeconfig["users"][0]["user"]
    print(f"  server   {cluster['server']}")
    print(f"  user     exec {user['exec']['command']} {' '.join(user['exec']['args'][:1])} ...")

    step("AKS API: namespaces, with an Entra token for the AKS server app")
    from kubernetes import client as k8s

    with tempfile.TemporaryDirectory() as folder:
        ca_file = Path(folder) / "ca.crt"
        ca_file.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        config = k8s.Configuration()
        config.host = cluster["server"]
        config.ssl_ca_cert = str(ca_file)
        aks_token = credential.get_token(f"{AKS_SERVER_APP}/.default").token
        config.api_key = {"authorization": f"Bearer {aks_token}"}
        with k8s.ApiClient(config) as api:
            names = [ns.metadata.name for ns in k8s.CoreV1Api(api).list_namespace().items]
    print(f"  {', '.join(names)}")

    step("PostgreSQL: a throwaway server, reached with a password login")
    with TempPostgres() as pg, pg.connect() as conn:
        version = conn.execute("select version()").fetchone()
        assert version is not None
        print(f"  {str(version[0]).split(',')[0]} on {pg.host}:{pg.port}")

    print(f"\ndemo finished in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
