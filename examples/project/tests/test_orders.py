"""An integration suite as a team writes it, using azpytest's fixtures."""

from __future__ import annotations

from decimal import Decimal

import pytest
from azure.keyvault.secrets import SecretClient
from kubernetes import client

pytestmark = pytest.mark.integration


def test_database_answers(db_connection):
    assert db_connection.execute("select 1 + 1").fetchone() == (2,)


def test_orders_table_round_trip(pg_transaction):
    pg_transaction.execute("create table orders (id int primary key, total numeric)")
    pg_transaction.execute("insert into orders values (1, 9.99), (2, 20)")
    assert pg_transaction.execute("select sum(total) from orders").fetchone()[0] == Decimal("29.99")


def test_secret_from_key_vault(keyvault_secret):
    assert keyvault_secret("pg-user") == "app_ci"


def test_own_sdk_client_with_the_job_credential(azure_credential):
    vault = SecretClient("https://kv-azpytest.vault.azure.net", azure_credential)
    assert vault.get_secret("pg-database").value == "shop_db"


def test_cluster_namespace(kube_client, kube_namespace):
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_config_map(
        kube_namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"mode": "test"}),
    )
    assert core.read_namespaced_config_map("settings", kube_namespace).data == {"mode": "test"}


def test_checkout_total_is_wrong_on_purpose(db_connection):
    """Fails, to show the summary, the annotation and the scrubbed failure artifacts."""
    total = db_connection.execute("select 10 * 3").fetchone()[0]
    assert total == 31, "checkout total"
