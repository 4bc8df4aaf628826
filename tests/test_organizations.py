"""Organizations: keys made for one, evaluations recorded with their submitter's, lists scoped to
it, CDS Hooks clients' own, and the migration that puts what was stored before in ``default``."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import insert, select, text

from fastapi.testclient import TestClient

from cds_client import ISSUER, PUBLIC_URL, clients_file, reactiv8_order
from cds_support import COVERAGE, PATIENT, hook, signer  # noqa: F401 - a fixture
from service import cli
from service.app import create_app
from service.settings import Settings
from service.store.evaluations import RESULT_COLUMNS, get_evaluation_result, list_evaluation_results, result_text
from service.store.keys import KeyRecord, authenticate, create_key, list_keys
from service.store.tables import ApiKey, Evaluation, utc_now


def caller(role, organization):
    return KeyRecord(id="f" * 16, role=role, label=None, organization=organization)


def test_keys_are_made_for_an_organization_with_a_name_default_default(database):
    _, plain = create_key(database, "reviewer", organization="payer-east", name="Dr. Ada Reviewer")
    _, default = create_key(database, "intake")
    _, auditor = create_key(database, "auditor", organization="regulator")

    assert authenticate(database, plain).organization == "payer-east"
    assert authenticate(database, plain).name == "Dr. Ada Reviewer"
    assert authenticate(database, default).organization == "default"
    assert authenticate(database, auditor).role == "auditor"
    assert [k["organization"] for k in list_keys(database)] == ["payer-east", "default", "regulator"]


@pytest.mark.parametrize("organization", ["", "two words", "tab\there", "x" * 129, "bidi\u202eorg"])
def test_an_organization_name_that_could_disguise_another_is_refused(database, organization):
    with pytest.raises(ValueError, match="organization"):
        create_key(database, "intake", organization=organization)


def test_keys_create_takes_role_org_and_name(database_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COVERAGE_CRITERIA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COVERAGE_CRITERIA_DATABASE_URL", database_url)

    assert cli.main(["keys", "create", "--role", "auditor", "--org", "regulator", "--name", "A. Auditor"]) == 0
    plaintext = capsys.readouterr().out.strip().splitlines()[-1]
    assert cli.main(["keys", "create", "--role", "intake", "--org", "bad org"]) == 2
    assert "organization" in capsys.readouterr().err
    assert cli.main(["keys", "list"]) == 0
    listed = capsys.readouterr().out

    assert "auditor" in listed and "regulator" in listed and "A. Auditor" in listed
    assert plaintext.startswith("cc_") and listed.count("\n") == 1  # the refused key was not made


def test_an_intake_caller_lists_only_its_own_organization_s_evaluations_of_a_reference(client, database, full_case):
    keys = {org: create_key(database, "intake", organization=org)[1] for org in ("east", "west")}
    made = {org: client.post("/v1/evaluations", json=full_case, headers={"X-API-Key": key}).json()
            for org, key in keys.items()}

    for org in ("east", "west"):
        own = list_evaluation_results(database, caller("intake", org), full_case["external_id"]).results
        assert [json.loads(r)["evaluation_id"] for r in own] == [made[org]["evaluation_id"]]
    every = list_evaluation_results(database, caller("reviewer", "elsewhere"), full_case["external_id"]).results
    assert len(every) == 2
    assert get_evaluation_result(database, caller("intake", "west"), made["east"]["evaluation_id"]) is None
    assert get_evaluation_result(database, caller("auditor", "elsewhere"), made["east"]["evaluation_id"]) is not None


@pytest.mark.parametrize("organization, expected", [(None, ISSUER), ("ehr-health-system", "ehr-health-system")])
def test_a_cds_client_s_evaluations_belong_to_its_organization_default_its_issuer(
        database, evaluator, tmp_path, signer, organization, expected):  # noqa: F811
    settings = Settings(data_dir=tmp_path, database_url=database.url.render_as_string(hide_password=False),
                        public_url=PUBLIC_URL,
                        cds_clients_file=clients_file(tmp_path / "clients.json", signer, organization=organization))
    body = {"hook": "order-sign", "hookInstance": "6a3e0c6e-9f0a-4a3b-9a51-1d2c1f1b0c01",
            "context": {"userId": "Practitioner/1", "patientId": "123",
                        "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                        "entry": [{"resource": reactiv8_order()}]}},
            "prefetch": {"patient": PATIENT, "coverage": COVERAGE}}
    with TestClient(create_app(settings, evaluator)) as cds:
        cds.signer = signer
        assert hook(cds, body).status_code == 200
    with database.session() as session:
        stored = session.execute(select(Evaluation.organization, *RESULT_COLUMNS)).one()
    assert stored[0] == expected
    assert json.loads(result_text(*stored[1:]))["submitter"] == {"organization": expected}


def test_keys_and_evaluations_stored_before_organizations_belong_to_default(database, client, full_case):
    database.migrate("0007_determinations", down=True)
    with database.engine.begin() as connection:
        connection.execute(insert(ApiKey.__table__).values(
            id="0123456789abcdef", role="intake", label="before", created_at=utc_now(),
            secret_sha256="0" * 64))
        connection.execute(text(
            "INSERT INTO evaluations (id, external_id, policy_id, policy_version, key_id, case_json, result_json, "
            "created_at) VALUES ('old-1', 'OLD-1', 'p', '1', '0123456789abcdef', '{}', "
            "'{\"evaluation_id\":\"old-1\"}', :at)"), {"at": utc_now()})

    database.migrate()

    with database.session() as session:
        assert session.execute(select(ApiKey.organization, ApiKey.name)).one() == ("default", None)
        assert session.scalar(select(Evaluation.organization)) == "default"
    assert get_evaluation_result(database, caller("intake", "default"), "old-1") == '{"evaluation_id":"old-1"}'
    assert get_evaluation_result(database, caller("intake", "other"), "old-1") is None
