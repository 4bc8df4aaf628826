"""Helpers for the CDS Hooks tests: the real request fixtures of shared/fhir-examples (read in
place), the service under test, and the checks every answer must pass. The client's side (keys,
tokens, orders, the loopback EHR) is tests/cds_client.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.devicerequest import DeviceRequest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_client import PUBLIC_URL, SIGN, Signer, clients_file
from conftest import FULL_CASE
from crd_invariants import answered_versions, coverage_informations, values, violations
from fhir_support import response
from service.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT.parent / "shared" / "fhir-examples"


def example(name: str) -> dict[str, Any]:
    """A real file of shared/fhir-examples, read where it is; the test is skipped without it."""
    path = EXAMPLES / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (shared/fhir-examples is not beside the checkout)")
    return json.loads(path.read_text(encoding="utf-8"))


# --- the service under test, and what every answer must be ---------------------------------------

R4_MODELS = {"ServiceRequest": ServiceRequest, "DeviceRequest": DeviceRequest}
FORBIDDEN = {"covered", "not-covered", "no-auth", "satisfied"}
# The fields of the contract's example case (every criterion met), as DTR answers keyed by path.
ALL_MET = {f"{section}.{name}": value for section, fields in FULL_CASE.items() if isinstance(fields, dict)
           for name, value in fields.items()}
COVERAGE = {"resourceType": "Coverage", "id": "cov-1", "status": "active",
            "beneficiary": {"reference": "Patient/123"}, "payor": [{"reference": "Organization/payer"}]}
PATIENT = {"resourceType": "Patient", "id": "123", "birthDate": "1974-06-15"}


def dtr(answers: dict[str, Any], **options: Any) -> dict[str, Any]:
    """A DTR QuestionnaireResponse about the requests' patient (Patient/123), answering fields by path."""
    return {**response(answers, **options), "subject": {"reference": "Patient/123"}}


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer("ES384")


@pytest.fixture
def fhir_servers() -> list[str]:
    """The FHIR servers registered for the test client (a module overrides this to read an EHR)."""
    return []


@pytest.fixture
def cds(database, evaluator, tmp_path, signer, fhir_servers) -> Iterator[TestClient]:
    with cds_service(database, evaluator, tmp_path, signer, fhir_servers) as client:
        yield client


@contextmanager
def cds_service(database, evaluator, tmp_path, signer, fhir_servers: list[str], **settings: Any) -> Iterator[TestClient]:
    """The real app with ``signer`` as its one trusted client, reading from ``fhir_servers``."""
    configured = Settings(data_dir=tmp_path, database_url=database.url.render_as_string(hide_password=False),
                          public_url=PUBLIC_URL, **settings,
                          cds_clients_file=clients_file(tmp_path / "clients.json", signer, fhir_servers=fhir_servers))
    with TestClient(create_app(configured, evaluator)) as client:
        client.signer = signer
        yield client


def hook(cds: TestClient, body: dict, service: str = SIGN):
    path = f"/cds-services/{service}"
    return cds.post(path, json=body, headers=cds.signer.headers(path))


def actions_of(answer) -> list[dict]:
    """The system actions of a 200 answer with no cards (every answer carries systemActions)."""
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["cards"] == []
    return body["systemActions"]


def version_of(body: dict) -> str:
    """The CRD version a request asks for (none: the service answers in 2.1's shape)."""
    return (body.get("extension") or {}).get("davinci-crd.requestedVersion") or "2.1"


def check_action(action: dict, draft: dict, version: str = "2.1") -> dict:
    """One coverage-information update: R4-valid, the draft plus one extension (replacing one for
    the same Coverage), the rules and invariants of the CRD versions the answer is for (2.0.1 and
    2.1 unless 2.2 was asked for), never a decision. Returns the extension."""
    assert action["type"] == "update"
    updated = action["resource"]
    R4_MODELS[updated["resourceType"]].model_validate(updated)
    assert {k: v for k, v in updated.items() if k != "extension"} == {k: v for k, v in draft.items() if k != "extension"}
    information = updated["extension"][-1]
    [coverage] = values(information, "coverage")
    kept = [e for e in draft.get("extension", []) if e not in coverage_informations(draft)
            or values(e, "coverage") != [coverage]]
    assert updated["extension"] == [*kept, information]
    for checked in answered_versions(version):
        assert violations(information, checked) == [], (checked, violations(information, checked))
    codes = {v for url in ("covered", "pa-needed", "doc-needed") for v in values(information, url)}
    assert not codes & FORBIDDEN
    return information


def outcome_of(answer, status: int) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+json")
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    return body
