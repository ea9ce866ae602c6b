"""Settings from Key Vault: through the fixture and through the environment."""

import hashlib
import os


def test_api_key_from_key_vault(keyvault_secret):
    key = keyvault_secret("api-key")
    print("calling the payments API with", key)  # captured, and masked where it is shown
    assert len(key) > 20


def test_api_key_in_the_environment(keyvault_secret):
    assert (
        hashlib.sha256(os.environ["API_KEY"].encode()).digest()
        == hashlib.sha256(keyvault_secret("api-key").encode()).digest()
    )
