"""Bearer tokens (JWT) for publish, replicate and download scopes.

The embedded default signs tokens with an Ed25519 key kept in the service's state directory
(`esgf-ha token issue` prints one); production points services at an external issuer's JWKS
URL instead. A token carries its scopes in the standard `scope` claim, space separated, and may be bound to
data nodes (`data_nodes`, a list of host names) and projects (`projects`): a bound token writes
only records of those data nodes (and projects). A token without the claim is unbound, an
operator's, and writes any record.

    AuthError
     ├── MissingCredentials  401  no Authorization header or client certificate
     ├── InvalidToken        401  bad signature, expired, malformed
     └── InsufficientScope   403  a valid token without the needed scope
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SCOPES = ("esgf:publish", "esgf:replicate", "esgf:download")
ISSUER = "esgf-ha"


class AuthError(Exception):
    status = 401


class MissingCredentials(AuthError):
    pass


class InvalidToken(AuthError):
    pass


class InsufficientScope(AuthError):
    status = 403


def _key_path(state_dir: Path) -> Path:
    return state_dir / "keys" / "token-signing.pem"


def load_or_create_signing_key(state_dir: Path) -> Ed25519PrivateKey:
    path = _key_path(state_dir)
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise RuntimeError(f"{path} is not an Ed25519 key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pem)
    tmp.chmod(0o600)
    tmp.replace(path)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (path.parent / "token-signing.pub.pem").write_bytes(public)
    return key


def issue_token(
    state_dir: Path,
    scopes: list[str],
    subject: str = "operator",
    ttl: float = 86400.0,
    *,
    data_nodes: list[str] | None = None,
    projects: list[str] | None = None,
) -> str:
    for scope in scopes:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")
    if projects and not data_nodes:
        raise ValueError("a token bound to projects must be bound to data nodes too")
    key = load_or_create_signing_key(state_dir)
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "sub": subject,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + int(ttl),
        "jti": uuid.uuid4().hex,
    }
    if data_nodes:
        claims["data_nodes"] = sorted(set(data_nodes))
    if projects:
        claims["projects"] = sorted(set(projects))
    return jwt.encode(claims, key, algorithm="EdDSA")


@dataclass
class Principal:
    subject: str
    scopes: frozenset[str]
    via: str  # "token", "certificate" or "network"
    # None: unbound (an operator's credential); otherwise the only data nodes / projects
    # whose records this principal may write
    data_nodes: frozenset[str] | None = None
    projects: frozenset[str] | None = None


def _claim_set(claims: dict[str, object], name: str) -> frozenset[str] | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise InvalidToken(f"the token's {name} claim must be a non-empty list of names")
    return frozenset(value)


class TokenVerifier:
    """Checks bearer tokens against local public keys or an external issuer's JWKS.

    `issuer` and `audience`, when set, are required of the external issuer's tokens."""

    def __init__(
        self,
        public_keys: list[Ed25519PublicKey] | None = None,
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        self.public_keys = public_keys or []
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self.issuer = issuer
        self.audience = audience

    @classmethod
    def from_state_dir(cls, state_dir: Path, **kwargs: object) -> TokenVerifier:
        key = load_or_create_signing_key(state_dir)
        return cls([key.public_key()], **kwargs)  # type: ignore[arg-type]

    def verify(self, authorization: str | None, scope: str) -> Principal:
        if not authorization:
            raise MissingCredentials("authentication required: send Authorization: Bearer <token>")
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise InvalidToken("the Authorization header must be 'Bearer <token>'")
        claims = self._decode(token.strip())
        scopes = frozenset(str(claims.get("scope", "")).split())
        if scope not in scopes:
            raise InsufficientScope(f"the token lacks the scope {scope}")
        return Principal(
            str(claims.get("sub", "")),
            scopes,
            "token",
            data_nodes=_claim_set(claims, "data_nodes"),
            projects=_claim_set(claims, "projects"),
        )

    def _decode(self, token: str) -> dict[str, object]:
        errors = []
        if self.jwks is not None:
            # the operator's `iss`/`aud` bind the external issuer's tokens: another client of
            # the same identity provider must not be able to reuse its tokens here
            options: Any = {"require": ["exp"], "verify_aud": self.audience is not None}
            try:
                signing = self.jwks.get_signing_key_from_jwt(token)
                return jwt.decode(
                    token,
                    signing.key,
                    algorithms=["RS256", "ES256", "EdDSA"],
                    audience=self.audience,
                    issuer=self.issuer,
                    options=options,
                )
            except jwt.PyJWTError as exc:
                errors.append(str(exc))
        for key in self.public_keys:
            # our own tokens carry no audience; only the federation's key can have signed them
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=["EdDSA"],
                    options={"require": ["exp"], "verify_aud": False},
                )
            except jwt.ExpiredSignatureError:
                raise InvalidToken("the token has expired") from None
            except jwt.PyJWTError as exc:
                errors.append(str(exc))
        raise InvalidToken("invalid token: " + ("; ".join(errors) or "no key to check it"))
