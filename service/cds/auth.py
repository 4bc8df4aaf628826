"""Who may call the CDS Hooks services: CDS Hooks 2.0 client authentication.

Every call carries ``Authorization: Bearer <JWT>``, signed by the client (the EHR) with an
asymmetric key: RS384 or ES384; ``none`` and HMAC are refused whatever the token says. The
issuer must be listed in the clients file (``COVERAGE_CRITERIA_CDS_CLIENTS``), with its public
keys as a JWK Set; ``jku`` headers are not followed. ``aud`` must be the URL of the endpoint
called under ``COVERAGE_CRITERIA_PUBLIC_URL``; ``exp`` and ``iat`` are checked with a small
clock skew, lifetimes over five minutes are refused, and a ``jti`` is accepted once (the database
remembers it until the token has expired, for every worker process).

Signatures are checked by PyJWT, never here.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ALGORITHMS = ("RS384", "ES384")
CLOCK_SKEW_SECONDS = 30
MAX_LIFETIME_SECONDS = 300
_KEY_TYPES = {"RS384": "RSA", "ES384": "EC"}


class Unauthorized(Exception):
    """The call is refused (401); the message says why, without echoing what the client sent."""


@dataclass(frozen=True)
class Client:
    issuer: str
    keys: tuple[tuple[str | None, str | None, Any], ...]  # (kid, alg declared, public key)
    # URL prefixes its fhirServer may have; none listed: any http(s) URL
    fhir_servers: tuple[str, ...] = ()

    def may_read(self, fhir_server: str) -> bool:
        return not self.fhir_servers or any(fhir_server.startswith(prefix) for prefix in self.fhir_servers)


class ClientRegistry:
    """The trusted CDS clients, read once from ``{"clients": [{"iss": …, "jwks": {"keys": […]},
    "fhirServers": [URL prefix, …]}]}`` (``fhirServers`` optional: where the service may follow the
    client's ``fhirServer``)."""

    def __init__(self, clients: dict[str, Client]):
        self.clients = clients

    @classmethod
    def from_file(cls, path: Path | None) -> ClientRegistry:
        if path is None:
            return cls({})
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: cannot read the CDS clients file: {error}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "CDS clients") -> ClientRegistry:
        if not isinstance(data, dict) or not isinstance(data.get("clients"), list):
            raise ValueError(f'{where}: expected {{"clients": [{{"iss": …, "jwks": {{"keys": […]}}}}]}}')
        clients: dict[str, Client] = {}
        for index, entry in enumerate(data["clients"]):
            at = f"{where}: clients[{index}]"
            issuer = entry.get("iss") if isinstance(entry, dict) else None
            jwks = entry.get("jwks") if isinstance(entry, dict) else None
            if not isinstance(issuer, str) or not issuer:
                raise ValueError(f"{at}.iss: a non-empty string is required")
            if issuer in clients:
                raise ValueError(f"{at}.iss: {issuer!r} is listed twice")
            if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
                raise ValueError(f"{at}.jwks: a JWK Set with at least one key is required")
            keys = []
            for k_index, jwk in enumerate(jwks["keys"]):
                if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC"):
                    raise ValueError(f"{at}.jwks.keys[{k_index}]: only RSA and EC public keys are accepted")
                if "d" in jwk:
                    raise ValueError(f"{at}.jwks.keys[{k_index}]: a private key; list the public key only")
                try:
                    key = jwt.PyJWK(jwk, algorithm=jwk.get("alg") or _default_algorithm(jwk)).key
                except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError) as error:
                    raise ValueError(f"{at}.jwks.keys[{k_index}]: {error}") from None
                keys.append((jwk.get("kid"), jwk.get("alg"), key))
            servers = entry.get("fhirServers", [])
            if not isinstance(servers, list) or not all(
                    isinstance(url, str) and url.startswith(("https://", "http://")) for url in servers):
                raise ValueError(f"{at}.fhirServers: a list of http(s) URL prefixes is expected")
            clients[issuer] = Client(issuer, tuple(keys), tuple(servers))
        return cls(clients)

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The token's claims if its signature, issuer, audience and times are right; else
        Unauthorized. (Replays are the caller's to check, with the claims' ``jti`` and ``exp``.)"""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthorized("The bearer token is not a JWT.") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise Unauthorized(f"The token must be signed with {' or '.join(ALGORITHMS)}.")
        client = self.clients.get(unverified.get("iss")) if isinstance(unverified.get("iss"), str) else None
        if client is None:
            raise Unauthorized("The token's issuer is not a trusted CDS client.")
        kid = header.get("kid")
        candidates = [
            key for key_id, declared, key in client.keys
            if (kid is None or key_id == kid) and declared in (None, algorithm)
            and _key_type(key) == _KEY_TYPES[algorithm]
        ]
        if not candidates:
            raise Unauthorized("No key of this client matches the token's kid and alg.")
        for key in candidates:
            try:
                claims = jwt.decode(
                    token, key, algorithms=[algorithm], audience=audience, issuer=client.issuer,
                    leeway=CLOCK_SKEW_SECONDS,
                    options={"require": ["iss", "aud", "exp", "iat", "jti"]},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise Unauthorized("The token has expired.") from None
            except jwt.ImmatureSignatureError:
                raise Unauthorized("The token is issued in the future.") from None
            except jwt.InvalidAudienceError:
                raise Unauthorized("The token's aud is not the URL of this endpoint.") from None
            except jwt.MissingRequiredClaimError as error:
                raise Unauthorized(f"The token lacks the {error.claim} claim.") from None
            except jwt.PyJWTError:
                raise Unauthorized("The token is invalid.") from None
            if not isinstance(claims["jti"], str) or not claims["jti"]:
                raise Unauthorized("The token's jti must be a non-empty string.")
            if claims["exp"] - time.time() > MAX_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
                raise Unauthorized(f"The token may be valid for at most {MAX_LIFETIME_SECONDS} seconds.")
            return claims
        raise Unauthorized("The token's signature does not verify with the client's keys.")


def _default_algorithm(jwk: dict[str, Any]) -> str:
    return "RS384" if jwk.get("kty") == "RSA" else "ES384"


def _key_type(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC"
    return "other"


def expiry(claims: dict[str, Any]) -> datetime.datetime:
    """When a token's jti may be forgotten: its expiry plus the clock skew allowed."""
    return datetime.datetime.fromtimestamp(claims["exp"] + CLOCK_SKEW_SECONDS, datetime.UTC)
