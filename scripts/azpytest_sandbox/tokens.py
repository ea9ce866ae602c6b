"""Signing keys and the JWTs the stand-ins issue: GitHub OIDC tokens and Entra access tokens."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any, cast

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class SigningKey:
    """An RSA key with a key id, as an issuer publishes it in its JWKS."""

    kid: str
    private: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = private.public_key().public_numbers()
        kid = hashlib.sha256(_b64url_uint(numbers.n).encode()).hexdigest()[:40].upper()
        return cls(kid=kid, private=private)

    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }

    def sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        return jwt.encode(
            claims, self.private, algorithm="RS256", headers={"kid": self.kid, "typ": typ}
        )

    def verify(self, token: str, **options: Any) -> dict[str, Any]:
        """Check signature and times; raises jwt.PyJWTError subclasses."""
        claims: dict[str, Any] = jwt.decode(
            token,
            self.private.public_key(),
            algorithms=["RS256"],
            options=cast(Any, {"verify_aud": False, **options}),
        )
        return claims


def unverified_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def now() -> int:
    return int(time.time())


def token_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
