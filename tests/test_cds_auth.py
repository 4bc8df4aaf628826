"""CDS Hooks client authentication: JWT bearer tokens signed with the client's asymmetric key."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from cds_client import ISSUER, PUBLIC_URL, SIGN, Signer, clients_file, unsigned_token
from service.app import create_app
from service.cds.auth import ClientRegistry
from service.settings import Settings
from service.store.keys import list_keys, revoke_key

PATH = f"/cds-services/{SIGN}"
# A call with no order of the policy: answered {"cards": []} once the caller is admitted.
BODY = {
    "hook": "order-sign",
    "hookInstance": "5f1c9c56-3f5b-4a43-9c39-1d0d5e0ad2f1",
    "context": {"userId": "Practitioner/1", "patientId": "123",
                "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": []}},
}


@pytest.fixture(scope="module")
def rsa_signer() -> Signer:
    return Signer("RS384")


@pytest.fixture(scope="module")
def ec_signer() -> Signer:
    return Signer("ES384")


@pytest.fixture
def cds(database, evaluator, tmp_path, rsa_signer, ec_signer) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, database_url=database.url.render_as_string(hide_password=False),
                        public_url=PUBLIC_URL, cds_clients_file=clients_file(tmp_path / "clients.json",
                                                                             rsa_signer, ec_signer))
    with TestClient(create_app(settings, evaluator)) as client:
        yield client


def call(cds: TestClient, token: str, path: str = PATH):
    return cds.post(path, json=BODY, headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
def test_a_token_signed_by_a_trusted_client_is_admitted(cds, rsa_signer, ec_signer, algorithm):
    signer = rsa_signer if algorithm == "RS384" else ec_signer
    response = call(cds, signer.token(PATH))
    assert response.status_code == 200, response.text
    assert response.json() == {"cards": [], "systemActions": []}


def test_no_token_is_refused(cds):
    response = cds.post(PATH, json=BODY)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_token_signed_by_another_key_is_refused(cds, rsa_signer):
    impostor = Signer("RS384", kid=rsa_signer.kid)  # same issuer and kid, a different key
    assert call(cds, impostor.token(PATH)).status_code == 401


def test_alg_none_is_refused(cds, rsa_signer):
    token = unsigned_token(rsa_signer.claims(PATH), {"alg": "none", "typ": "JWT", "kid": rsa_signer.kid})
    response = call(cds, token)
    assert response.status_code == 401
    assert "RS384 or ES384" in response.json()["detail"]


def test_hs256_with_the_public_key_as_secret_is_refused(cds, rsa_signer):
    public_pem = rsa_signer.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    token = unsigned_token(rsa_signer.claims(PATH), {"alg": "HS256", "typ": "JWT", "kid": rsa_signer.kid},
                           secret=public_pem)
    assert call(cds, token).status_code == 401


def test_an_expired_token_is_refused(cds, rsa_signer):
    now = int(time.time())
    response = call(cds, rsa_signer.token(PATH, iat=now - 600, exp=now - 300))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_a_token_issued_in_the_future_is_refused(cds, rsa_signer):
    now = int(time.time())
    response = call(cds, rsa_signer.token(PATH, iat=now + 600, exp=now + 700))
    assert response.status_code == 401
    assert "future" in response.json()["detail"]


def test_a_small_clock_skew_is_tolerated(cds, rsa_signer):
    now = int(time.time())
    assert call(cds, rsa_signer.token(PATH, iat=now + 10, exp=now + 100)).status_code == 200


def test_a_token_valid_for_more_than_five_minutes_is_refused(cds, rsa_signer):
    now = int(time.time())
    assert call(cds, rsa_signer.token(PATH, exp=now + 3600)).status_code == 401


@pytest.mark.parametrize("audience", [
    f"{PUBLIC_URL}/cds-services/another-service",
    f"http://testserver{PATH}",
    "https://attacker.example/cds-services",
])
def test_a_token_for_another_audience_is_refused(cds, rsa_signer, audience):
    response = call(cds, rsa_signer.token(PATH, aud=audience))
    assert response.status_code == 401
    assert "aud" in response.json()["detail"]


def test_an_unknown_issuer_is_refused(cds):
    stranger = Signer("RS384", issuer="https://stranger.example")
    response = call(cds, stranger.token(PATH))
    assert response.status_code == 401
    assert "issuer" in response.json()["detail"]


def test_a_replayed_jti_is_refused(cds, rsa_signer):
    token = rsa_signer.token(PATH)
    assert call(cds, token).status_code == 200
    replay = call(cds, token)
    assert replay.status_code == 401
    assert "jti" in replay.json()["detail"]
    # A new token reusing the jti is a replay too.
    reused = rsa_signer.token(PATH, jti=jwt.decode(token, options={"verify_signature": False})["jti"])
    assert call(cds, reused).status_code == 401


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "aud", "iss"])
def test_a_token_missing_a_claim_is_refused(cds, rsa_signer, claim):
    assert call(cds, rsa_signer.token(PATH, **{claim: None})).status_code == 401


def test_feedback_needs_a_token_too(cds):
    assert cds.post(f"{PATH}/feedback", json={"feedback": []}).status_code == 401


def test_a_revoked_client_key_is_refused(cds, database, rsa_signer):
    assert call(cds, rsa_signer.token(PATH)).status_code == 200
    key = next(k for k in list_keys(database) if k["label"] == f"CDS Hooks client {ISSUER}")
    assert key["role"] == "intake"
    assert revoke_key(database, key["id"])
    assert call(cds, rsa_signer.token(PATH)).status_code == 401


def test_behind_a_proxy_prefix_the_audience_is_still_the_public_url_of_the_endpoint(
        database, evaluator, tmp_path, rsa_signer):
    settings = Settings(data_dir=tmp_path, database_url=database.url.render_as_string(hide_password=False),
                        public_url=PUBLIC_URL, cds_clients_file=clients_file(tmp_path / "clients.json", rsa_signer))
    with TestClient(create_app(settings, evaluator), root_path="/criteria") as client:
        # As uvicorn --root-path passes it on (ASGI: the path includes the root path).
        assert call(client, rsa_signer.token(PATH), f"/criteria{PATH}").status_code == 200
        assert call(client, rsa_signer.token(PATH, aud=f"{PUBLIC_URL}/criteria{PATH}"), f"/criteria{PATH}").status_code == 401


def test_without_a_public_url_no_call_is_admitted(database, evaluator, tmp_path, rsa_signer):
    settings = Settings(data_dir=tmp_path, database_url=database.url.render_as_string(hide_password=False),
                        cds_clients_file=clients_file(tmp_path / "clients.json", rsa_signer))
    with TestClient(create_app(settings, evaluator)) as client:
        assert call(client, rsa_signer.token(PATH)).status_code == 401


@pytest.mark.parametrize("clients, problem", [
    ({"clients": [{"iss": "x", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}]}, "only RSA and EC"),
    ({"clients": [{"iss": "", "jwks": {"keys": []}}]}, "iss"),
    ({"clients": [{"iss": "x", "jwks": {"keys": []}}]}, "at least one key"),
    ({"client": []}, "expected"),
])
def test_the_clients_file_is_checked(clients, problem):
    with pytest.raises(ValueError, match=problem):
        ClientRegistry.from_dict(clients)


def test_fhir_servers_in_the_clients_file_are_checked(ec_signer):
    with pytest.raises(ValueError, match="fhirServers"):
        ClientRegistry.from_dict({"clients": [{"iss": "x", "jwks": {"keys": [ec_signer.jwk]},
                                               "fhirServers": ["file:///etc"]}]})


def test_a_private_key_in_the_clients_file_is_refused(rsa_signer):
    private_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_signer.private, as_dict=True)
    with pytest.raises(ValueError, match="private key"):
        ClientRegistry.from_dict({"clients": [{"iss": "x", "jwks": {"keys": [private_jwk]}}]})
