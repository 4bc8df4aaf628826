"""Who may call the CDS Hooks services: CDS Hooks 2.0 client authentication.

Every call carries ``Authorization: Bearer <JWT>``, signed by the client (the EHR) with an
asymmetric key: RS384 or ES384; ``none`` and HMAC are refused whatever the token says. The
issuer must be listed in the clients file (``COVERAGE_CRITERIA_CDS_CLIENTS``), with its public
keys as a JWK Set; ``jku`` headers are not followed. ``aud`` must be the URL of the endpoint
called under ``COVERAGE_CRITERIA_PUBLIC_URL`` (a list may hold that URL only); ``exp`` and ``iat``
must be numbers, checked with a small clock skew: a token issued more than five minutes ago or
valid for more than five minutes is refused, and a ``jti`` is accepted once (the database
remembers it until the token has expired, for every worker process). Whatever the header holds
(non-ASCII bytes, a string ``exp``), the answer is a 401, never a 500.

Signatures are checked by PyJWT, never here.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.cds.fhir_servers import Origin, registered, under

ALGORITHMS = ("RS384", "ES384")
CLOCK_SKEW_SECONDS = 30
MAX_LIFETIME_SECONDS = 300  # CDS Hooks: a token lives at most five minutes (exp and iat both hold to it)
MAX_TOKEN_LENGTH = 8192
MAX_ORGANIZATION = 128
# A compact JWS: three base64url parts (the signature may be empty only for alg "none", refused later).
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_KEY_TYPES = {"RS384": "RSA", "ES384": "EC"}


class Unauthorized(Exception):
    """The call is refused (401); the message says why, without echoing what the client sent."""


@dataclass(frozen=True)
class Client:
    issuer: str
    keys: tuple[tuple[str | None, str | None, Any], ...]  # (kid, alg declared, public key)
    # The FHIR servers (URL prefixes, parsed) its fhirServer may be under; none: nothing is read.
    fhir_servers: tuple[Origin, ...] = ()
    # Who it submits for (contract "Organizations"): the clients file's "organization", else its iss.
    organization: str = ""

    def may_read(self, fhir_server: str) -> bool:
        return under(fhir_server, self.fhir_servers)


class ClientRegistry:
    """The trusted CDS clients, read once from ``{"clients": [{"iss": …, "jwks": {"keys": […]},
    "fhirServers": [base URL, …], "organization": …}]}``: ``fhirServers`` are where the service may
    read with the client's token (none listed: nowhere; service.cds.fhir_servers), ``organization``
    whom it submits for (default: its ``iss``)."""

    def __init__(self, clients: dict[str, Client]):  # by issuer
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
            if not isinstance(servers, list):
                raise ValueError(f"{at}.fhirServers: a list of http(s) URL prefixes is expected")
            organization = entry.get("organization", issuer)
            if not isinstance(organization, str) or not organization.strip() or len(organization) > MAX_ORGANIZATION:
                raise ValueError(f"{at}.organization: a non-empty string of at most {MAX_ORGANIZATION} characters")
            clients[issuer] = Client(issuer, tuple(keys), registered(servers, f"{at}.fhirServers"), organization)
        return cls(clients)

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The token's claims if its signature, issuer, audience and times are right; else
        Unauthorized. (Replays are the caller's to check, with the claims' ``jti`` and ``exp``.)"""
        if len(token) > MAX_TOKEN_LENGTH or not _COMPACT_JWS.fullmatch(token):
            raise Unauthorized("The bearer token is not a JWT.")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise Unauthorized("The bearer token is not a JWT.") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
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
                    token, key, algorithms=[algorithm], issuer=client.issuer, leeway=CLOCK_SKEW_SECONDS,
                    options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_aud": False},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise Unauthorized("The token has expired.") from None
            except jwt.ImmatureSignatureError:
                raise Unauthorized("The token is issued in the future.") from None
            except jwt.MissingRequiredClaimError as error:
                raise Unauthorized(f"The token lacks the {error.claim} claim.") from None
            except jwt.PyJWTError:
                raise Unauthorized("The token is invalid.") from None
            _check_claims(claims, audience)
            return claims
        raise Unauthorized("The token's signature does not verify with the client's keys.")


def _check_claims(claims: dict[str, Any], audience: str) -> None:
    """What PyJWT leaves open: the types of the time claims (it reads ``"exp": "1234"`` as a
    number), the age of ``iat``, the lifetime, and an ``aud`` naming only this endpoint (PyJWT
    accepts a list that also names other services)."""
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name)
        if name in claims and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise Unauthorized(f"The token's {name} must be a number (seconds since the epoch).")
    now = time.time()
    if now - claims["iat"] > MAX_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
        raise Unauthorized(f"The token was issued more than {MAX_LIFETIME_SECONDS} seconds ago.")
    if claims["exp"] - now > MAX_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
        raise Unauthorized(f"The token may be valid for at most {MAX_LIFETIME_SECONDS} seconds.")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if not audiences or any(named != audience for named in audiences):
        raise Unauthorized("The token's aud is not the URL of this endpoint (and only of it).")
    if not isinstance(claims["jti"], str) or not claims["jti"] or len(claims["jti"]) > 1024:
        raise Unauthorized("The token's jti must be a non-empty string.")


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
