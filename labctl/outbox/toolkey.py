"""The tool's own RSA key for LTI: it signs the client assertions of AGS score requests, and its public half is
published as a JWKS (``GET /lti/jwks.json``) for the platforms to check them.

The key is a PEM file (``LABCTL_LTI_KEY_FILE``); in development labctl makes one in its data directory the first time
(mode 0600) and keeps it. Its key id is the RFC 7638 thumbprint of the public key, so a platform that caches the JWKS
finds a rotated key by its new id.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True)
class ToolKey:
    private_pem: str
    kid: str
    public_jwk: dict[str, str]

    @classmethod
    def of(cls, key: rsa.RSAPrivateKey) -> ToolKey:
        numbers = key.public_key().public_numbers()
        required = {"e": _b64(numbers.e), "kty": "RSA", "n": _b64(numbers.n)}  # RFC 7638: these, sorted
        kid = base64.urlsafe_b64encode(hashlib.sha256(json.dumps(required, separators=(",", ":")).encode())
                                       .digest()).decode().rstrip("=")
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return cls(private_pem=pem, kid=kid, public_jwk={**required, "kid": kid, "alg": "RS256", "use": "sig"})

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}


def load(path: Path, *, create: bool) -> ToolKey:
    """The key in ``path``; with ``create``, a new 2048-bit key is written there first when the file is missing."""
    if not path.exists():
        if not create:
            raise ValueError(f"the LTI tool key {path} does not exist (LABCTL_LTI_KEY_FILE names a PEM RSA key)")
        path.parent.mkdir(parents=True, exist_ok=True)
        made = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it meanwhile: use that one
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(ToolKey.of(made).private_pem)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the LTI tool key {path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"the LTI tool key {path} is not an RSA key (AGS assertions are RS256)")
    return ToolKey.of(key)
