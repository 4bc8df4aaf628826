"""A CDS Hooks client's side, for the tests and bench/cds_hooks.py: its signing key and tokens,
a ReActiv8 order, and the EHR's FHIR server as a real HTTP server on loopback (no pytest here)."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PUBLIC_URL = "https://payer.example/criteria"
ISSUER = "https://ehr.example/cds-client"
POLICY = "isass-2023-restorative-neurostimulation"
SIGN = f"{POLICY}-order-sign"
SELECT = f"{POLICY}-order-select"
CPT = "http://www.ama-assn.org/go/cpt"


class Signer:
    """A CDS client's key pair and the tokens it signs."""

    def __init__(self, algorithm: str = "RS384", issuer: str = ISSUER, kid: str | None = None):
        self.algorithm, self.issuer = algorithm, issuer
        self.kid = kid or f"{algorithm.lower()}-{uuid.uuid4().hex[:8]}"
        if algorithm == "RS384":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ec.generate_private_key(ec.SECP384R1())
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk = {**jwk, "kid": self.kid, "alg": algorithm, "use": "sig"}

    def claims(self, service_path: str, audience_base: str = PUBLIC_URL, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": audience_base + service_path, "iat": now, "exp": now + 120,
                  "jti": str(uuid.uuid4())}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, service_path: str, audience_base: str = PUBLIC_URL, **overrides: Any) -> str:
        return jwt.encode(self.claims(service_path, audience_base, **overrides), self.private, algorithm=self.algorithm,
                          headers={"kid": self.kid, "typ": "JWT"})

    def headers(self, service_path: str, audience_base: str = PUBLIC_URL, **overrides: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(service_path, audience_base, **overrides)}"}


def unsigned_token(claims: dict[str, Any], header: dict[str, Any], secret: bytes | None = None) -> str:
    """A token put together by hand, as an attacker would: ``alg: none``, or HMAC with ``secret``."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def clients_file(path: Path, *signers: Signer, fhir_servers: list[str] | None = None,
                 organization: str | None = None) -> Path:
    by_issuer: dict[str, list[dict[str, Any]]] = {}
    for signer in signers:
        by_issuer.setdefault(signer.issuer, []).append(signer.jwk)
    clients = [{"iss": iss, "jwks": {"keys": keys}, **({"fhirServers": fhir_servers} if fhir_servers else {}),
                **({"organization": organization} if organization else {})}
               for iss, keys in by_issuer.items()]
    path.write_text(json.dumps({"clients": clients}), encoding="utf-8")
    return path


def reactiv8_order(order_id: str = "reactiv8-1", patient: str = "123", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": order_id,
        "status": "draft",
        "intent": "original-order",
        "code": {"coding": [{"system": CPT, "code": "64568",
                             "display": "Implantation of neurostimulator electrode array and pulse generator"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "occurrenceDateTime": "2026-12-01",
        "authoredOn": "2026-11-20",
        **extra,
    }


def with_order(request: dict[str, Any], order: dict[str, Any], fhir_server: str | None = None) -> dict[str, Any]:
    """A copy of a real request with ``order`` added to its draft orders (and a fresh hookInstance).
    Its ``fhirServer`` (example.org) is never called: it becomes ``fhir_server`` (a loopback
    server) or, without one, the token is dropped so that only prefetch is read."""
    copied = copy.deepcopy(request)
    copied["hookInstance"] = str(uuid.uuid4())
    if fhir_server is None:
        copied.pop("fhirAuthorization", None)
    else:
        copied["fhirServer"] = fhir_server
    copied["context"]["draftOrders"].setdefault("entry", []).append(
        {"fullUrl": f"http://example.org/fhir/ServiceRequest/{order['id']}", "resource": order})
    return copied


# --- the EHR's FHIR server, on loopback -------------------------------------------------------


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"resource": r} for r in resources]}


def dead_url(path: str = "/fhir") -> str:
    """A loopback URL nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    return f"http://127.0.0.1:{port}{path}"


class FhirServer:
    """A real HTTP server in a thread answering FHIR reads and searches under ``base_path`` from
    ``resources`` (by type), requiring ``token``; ``delay`` slows every answer, ``status``
    overrides it, ``raw`` (path -> (status, headers, chunks of bytes) or None) answers as it likes."""

    def __init__(self, resources: list[dict[str, Any]], token: str = "ehr-token", base_path: str = "/fhir"):
        self.resources, self.token, self.base_path = resources, token, base_path
        self.delay, self.status = 0.0, None
        self.page_size: int | None = None  # searches answer in pages linked by "next"
        self.raw: Callable[[str], tuple[int, dict[str, str], Iterable[bytes]] | None] | None = None
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK wait

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.requests.append((self.path, self.headers.get("Authorization")))
                time.sleep(outer.delay)
                raw = outer.raw(self.path) if outer.raw is not None else None
                if raw is None:
                    status, body = outer.answer(self.path, self.headers.get("Authorization"))
                    data = json.dumps(body).encode()
                    raw = status, {"Content-Length": str(len(data))}, [data]
                status, headers, chunks = raw
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    for chunk in chunks:
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):  # the service stopped reading: as it should
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = self.origin + base_path
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        if self.status is not None:
            return self.status, {"resourceType": "OperationOutcome", "issue": []}
        if authorization != f"Bearer {self.token}":
            return 401, {"resourceType": "OperationOutcome", "issue": []}
        parts = urlsplit(path)
        segments = parts.path.removeprefix(self.base_path + "/").split("/")
        of_type = [r for r in self.resources if r["resourceType"] == segments[0]]
        if len(segments) == 2:
            found = [r for r in of_type if r.get("id") == segments[1]]
            return (200, found[0]) if found else (404, {"resourceType": "OperationOutcome", "issue": []})
        query = parse_qs(parts.query)
        if "code" in query:
            codes = {c.split("|")[-1] for c in query["code"][0].split(",")}
            of_type = [r for r in of_type
                       if any(c.get("code") in codes for c in r.get("code", {}).get("coding", []))]
        if self.page_size is None:
            return 200, searchset(*of_type)
        page = int(query.get("_page", ["0"])[0])
        bundle = searchset(*of_type[page * self.page_size:(page + 1) * self.page_size])
        if (page + 1) * self.page_size < len(of_type):
            following = f"{self.url}/{segments[0]}?{parts.query.split('&_page=')[0]}&_page={page + 1}"
            bundle["link"] = [{"relation": "next", "url": following}]
        return 200, bundle

    def __enter__(self) -> "FhirServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
