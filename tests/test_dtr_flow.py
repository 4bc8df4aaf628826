"""CRD, then DTR, then the answers: one request from the order to a complete evaluation.

CRD order-sign (prefetch: the patient and the coverage only) hands out a coverage-assertion-id
asking for documentation; the DTR app fetches ``$questionnaire-package`` with it as ``context``,
runs the package's CQL in cql-execution on the chart, which pre-fills what the chart holds; the
clinician answers the rest; the QuestionnaireResponse comes back and is stored as the same
request's next evaluation, with nothing missing.
"""

from __future__ import annotations

import json

from cds_client import PUBLIC_URL, reactiv8_order
from cds_support import COVERAGE, PATIENT, actions_of, cds, check_action, fhir_servers, hook, signer  # noqa: F401 (fixtures)
from crd_invariants import values
from dtr_inferno import assert_inferno_static_package
from dtr_support import FHIR, GOOD, chart_with_gaps, post_response, prefill_with_cql, respond
from fhir_support import bundle
from service.store.keys import create_key

CHART_FIELDS = {"patient.age_years", "patient.bmi", "low_back_pain.nrs", "low_back_pain.odi_percent",
                "low_back_pain.duration_months", "conservative_care.physical_therapy_outcome"}


def ehr_chart() -> dict:
    """The EHR's chart of the hook's patient (Patient/123): the worked example's resources."""
    text = json.dumps(chart_with_gaps("EHR")).replace("Patient/pat-1", "Patient/123").replace('"id": "pat-1"', '"id": "123"')
    return json.loads(text)


def test_crd_order_sign_then_dtr_package_cql_prefill_answers_and_a_complete_resubmission(cds, database, reviewer_key):
    # The DTR app's key belongs to the EHR's organization: the CDS client's (its iss, the clients
    # file naming no other), whose evaluation the hook stored; another organization's key gets a 404.
    intake_key = create_key(database, "intake", organization=cds.signer.issuer)[1]
    order = reactiv8_order()
    crd = {"hook": "order-sign", "hookInstance": "flow-hook-1",
           "context": {"userId": "Practitioner/1", "patientId": "123",
                       "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}},
           "prefetch": {"patient": PATIENT, "coverage": {"resourceType": "Bundle", "type": "searchset",
                                                          "entry": [{"resource": COVERAGE}]}}}
    [action] = actions_of(hook(cds, crd))
    information = check_action(action, order)
    [assertion_id] = values(information, "coverage-assertion-id")
    [canonical] = values(information, "questionnaire")

    parameters = {"resourceType": "Parameters", "parameter": [
        {"name": "coverage", "resource": COVERAGE}, {"name": "order", "resource": action["resource"]},
        {"name": "context", "valueString": assertion_id}]}
    answer = cds.post("/fhir/Questionnaire/$questionnaire-package", content=json.dumps(parameters),
                      headers={**FHIR, "Authorization": f"Bearer {intake_key}"})
    assert answer.status_code == 200, answer.text
    assert_inferno_static_package(answer.json())
    package = answer.json()["parameter"][0]["resource"]
    questionnaire = package["entry"][0]["resource"]
    assert questionnaire["url"] == canonical.partition("|")[0] and canonical.startswith(PUBLIC_URL)

    prefilled = prefill_with_cql(package, ehr_chart(), "2026-12-01")  # the DTR app's CQL run on the chart
    asked = set(_questions(questionnaire["item"]))
    assert set(prefilled) == CHART_FIELDS & asked and prefilled
    remaining = asked - set(prefilled)
    assert remaining and not remaining & CHART_FIELDS
    plain = {path: (value["code"] == "Y" if isinstance(value, dict) else value) for path, value in prefilled.items()}
    response = respond(questionnaire, {**plain, **{path: GOOD[path] for path in remaining}},
                       origin={path: "auto-client" for path in prefilled}, subject="Patient/123")  # the EHR's patient
    stored = post_response(cds, intake_key, bundle(response, action["resource"], identifier=None))
    assert stored.status_code == 201, stored.text

    result = cds.get(stored.headers["Location"], headers={"X-API-Key": intake_key}).json()
    assert result["external_id"] == "flow-hook-1"
    assert result["missing_information"] == [] and result["summary"]["outcome"] == "all_criteria_met"
    evidence = {e["field"]: e for c in (*result["criteria"], *result["flags"]) for e in c["evidence"]}
    assert evidence["patient.bmi"]["source"]["information_origin"] == "auto-client"
    assert evidence["low_back_pain.mechanical"]["source"]["information_origin"] == "manual"
    listed = cds.get("/v1/evaluations", params={"external_id": "flow-hook-1"}, headers={"X-API-Key": reviewer_key})
    assert {e["evaluation_id"] for e in listed.json()["evaluations"]} == {assertion_id, result["evaluation_id"]}
    requests = next((r for r in cds.app.routes if getattr(r, "path", "") == "/v1/requests/{request_id}"), None)
    if requests is not None:  # the request's history (the lead's requests work), where it exists
        history = cds.get(f"/v1/requests/{result['external_id']}", headers={"X-API-Key": reviewer_key})
        assert history.status_code == 200
        assert {assertion_id, result["evaluation_id"]} <= set(json.dumps(history.json()).split('"'))


def _questions(items):
    for item in items:
        if item["type"] not in ("group", "display"):
            yield item["linkId"]
        yield from _questions(item.get("item", []))
