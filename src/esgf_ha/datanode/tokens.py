"""The token verifier of a data node: the federation's public signing keys and/or an
external issuer's JWKS. A data node never holds a signing key."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from esgf_ha.common.auth import TokenVerifier
from esgf_ha.datanode.settings import DataSettings


def verifier_for(settings: DataSettings) -> TokenVerifier | None:
    keys = []
    for path in settings.token_public_keys:
        key = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path} is not an Ed25519 public key")
        keys.append(key)
    if not keys and not settings.jwks_url:
        return None
    return TokenVerifier(keys, jwks_url=settings.jwks_url)
