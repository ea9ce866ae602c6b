"""Refunds: one test passes, one fails on purpose (with the API key in what it leaves)."""

import json

import pytest

pytestmark = pytest.mark.refunds


def test_refund_allowed(db_connection):
    (allowed,) = db_connection.execute("select 25 <= 30").fetchone()
    assert allowed


def test_refund_total(db_connection, keyvault_secret, artifact_collector):
    key = keyvault_secret("api-key")
    print("refund service called with", key)
    artifact_collector.collect("refund-request.json", json.dumps({"api_key": key, "amount": 30}))
    (total,) = db_connection.execute("select 10 + 10").fetchone()
    assert total == 30, f"refund total {total} != 30 (api key {key})"
