"""FHIR intake through the real app and a real database: Bundles give the results the same facts
give as plain JSON; errors are OperationOutcomes; the stored case is the plain case read."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from fhir_support import (
    EXAMPLES, SNOMED, bmi, bundle, clinical, condition, example_bundle, example_case, nrs,
    observation, odi_response, order, patient, procedure, quantity, response,
)
from service.fhir.parse import validation_issues, Located
from service.store.tables import Evaluation

FHIR = {"Content-Type": "application/fhir+json"}
DAY = "2026-12-01"


def post_bundle(client, key, body, **params):
    text = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/v1/evaluations", content=text, params=params, headers={**FHIR, "X-API-Key": key})


def post_case(client, key, case):
    return client.post("/v1/evaluations", json=case, headers={"X-API-Key": key})


def findings(result):
    """What a result finds, without where values came from."""
    strip = lambda items: [{**i, "evidence": [{k: v for k, v in e.items() if k != "source"} for e in i["evidence"]]}
                           for i in items]
    return {"summary": result["summary"], "criteria": strip(result["criteria"]), "flags": strip(result["flags"]),
            "missing": result["missing_information"]}


def assert_outcome(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert not validation_issues(Located(outcome, "OperationOutcome"))
    return outcome


def test_the_worked_example_through_the_app_stores_the_plain_case(client, intake_key, database):
    response = post_bundle(client, intake_key, example_bundle())
    assert response.status_code == 201, response.text
    result = response.json()
    plain = post_case(client, intake_key, example_case()).json()
    assert findings(result) == findings(plain)
    nrs_evidence = next(e for c in result["criteria"] for e in c["evidence"] if e["field"] == "low_back_pain.nrs")
    assert nrs_evidence["source"] == {"reference": "Observation/pain-1", "date": "2026-10-02"}
    assert client.get(f"/v1/evaluations/{result['evaluation_id']}", headers={"X-API-Key": intake_key}).json() == result
    with database.session() as session:
        stored = session.scalar(select(Evaluation.case_json).where(Evaluation.id == result["evaluation_id"]))
    expected = example_case()
    expected.pop("policy")
    assert json.loads(stored) == expected


ODI_QUESTIONNAIRE = {"resourceType": "Questionnaire", "id": "odi", "status": "active",
                     "url": "http://example.org/Questionnaire/OswestryDisabilityIndexQuestionnaire",
                     "code": [{"system": "http://loinc.org", "code": "97908-8"}]}
# (resources, the same facts as plain JSON): one row per FHIR path of every field with a fhir: source
BASE = [patient("1974-06-15"), order(DAY)]
PATHS = {
    "age from birthDate": ([], {"patient": {"age_years": 52}}),
    "birthday on the service date": ([patient("1950-12-01")], {"patient": {"age_years": 76}}),
    "bmi kg/m2": ([bmi(36.5)], {"patient": {"bmi": 36.5}}),
    "bmi lb/in2 converted": ([bmi(0.044377, unit="[lb_av]/[in_i]2")], {"patient": {"bmi": 31.2001}}),
    "nrs valueInteger": ([nrs(7)], {"low_back_pain": {"nrs": 7}}),
    "nrs valueQuantity": ([observation("72514-3", "n", "2026-10-02", **quantity(5, "{score}"))], {"low_back_pain": {"nrs": 5}}),
    "nrs latest wins": ([nrs(3, "a", "2026-01-02"), nrs(8, "b", "2026-11-02"), nrs(1, "c", "2026-12-24")],
                        {"low_back_pain": {"nrs": 8}}),
    "nrs ignored statuses": ([nrs(6, "a", "2026-01-02"), nrs(2, "b", "2026-11-02", status="entered-in-error"),
                              nrs(2, "c", "2026-11-03", status="preliminary")], {"low_back_pain": {"nrs": 6}}),
    "odi observation": ([observation("97909-6", "o", "2026-10-02", **quantity(44, "%"))], {"low_back_pain": {"odi_percent": 44}}),
    "odi response score": ([odi_response([1] * 10, score=38)], {"low_back_pain": {"odi_percent": 38}}),
    "odi response ordinals": ([odi_response([4, 4, 4, 4, 4, 4, 4, 4, 4, 4])], {"low_back_pain": {"odi_percent": 80}}),
    "odi response by questionnaire code": ([ODI_QUESTIONNAIRE, odi_response([None] * 9 + [2], score=30)],
                                           {"low_back_pain": {"odi_percent": 30}}),
    "lbp duration": ([condition("M54.59", "lbp", onset="2025-12-01")], {"low_back_pain": {"duration_months": 12},
                                                                     "diagnosis_codes": ["M54.59"]}),
    "diagnosis codes": ([condition("M62.85", "m", recorded="2026-01-01")], {"diagnosis_codes": ["M62.85"]}),
    "refuted diagnosis": ([condition("M41.26", "s", recorded="2026-01-01", verification="refuted")], {}),
    "scoliosis": ([condition("M41.26", "s", recorded="2026-01-01")],
                  {"other_findings": {"scoliosis": True}, "diagnosis_codes": ["M41.26"]}),
    "stenosis with leg pain": ([condition("M48.062", "st", recorded="2026-01-01")],
                               {"other_findings": {"stenosis_with_leg_pain": True}, "diagnosis_codes": ["M48.062"]}),
    "physical therapy failed": ([procedure("91251008", "pt", "2026-02-01", outcome="385671000")],
                                {"conservative_care": {"physical_therapy_outcome": "failed"}}),
    "prior lumbar fusion": ([procedure("50172003", "f", "2015-02-01")], {"surgery": {"prior_spine_surgery_at_or_below_t8": True}}),
    "prior lumbar laminectomy (CPT)": ([procedure("63047", "l", "2015-02-01", system="http://www.ama-assn.org/go/cpt")],
                                       {"surgery": {"prior_spine_surgery_at_or_below_t8": True}}),
    "questionnaire items": ([response({"low_back_pain.mechanical": True, "device.able_to_operate": False,
                                       "multifidus_dysfunction.prone_instability_test": "positive",
                                       "conservative_care.duration_months": 9.5})],
                            {"low_back_pain": {"mechanical": True}, "device": {"able_to_operate": False},
                             "multifidus_dysfunction": {"prone_instability_test": "positive"},
                             "conservative_care": {"duration_months": 9.5}}),
}


@pytest.mark.parametrize("name", PATHS)
def test_every_fhir_path_gives_the_result_of_the_same_facts_as_plain_json(client, intake_key, name):
    resources, facts = PATHS[name]
    base = BASE if not any(r["resourceType"] == "Patient" for r in resources) else BASE[1:]
    if base is BASE:  # the base Patient's age, 52 on the service date
        facts = {**facts, "patient": {"age_years": 52, **facts.get("patient", {})}}
    response = post_bundle(client, intake_key, bundle(*base, *resources, identifier=f"FHIR-{name}"))
    assert response.status_code == 201, response.text
    plain = post_case(client, intake_key, {"external_id": f"FHIR-{name}", "service_date": DAY, **facts})
    assert plain.status_code == 201, plain.text
    assert findings(response.json()) == findings(plain.json())


def test_an_nrs_in_mm_is_refused_naming_its_unit(client, intake_key):
    in_mm = observation("72514-3", "vas", "2026-10-02", **quantity(70, "mm"))
    outcome = assert_outcome(post_bundle(client, intake_key, bundle(patient(), in_mm)), 422)
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].resource.value.ofType(Quantity).code"]


def test_unreadable_json_is_400_with_an_outcome(client, intake_key, database):
    outcome = assert_outcome(post_bundle(client, intake_key, b'{"resourceType": "Bundle",'), 400)
    assert outcome["issue"][0]["code"] == "structure"


def test_a_bad_header_on_a_fhir_request_is_answered_with_an_operation_outcome(client, intake_key, database):
    """Found by the OpenAPI fuzzer: the Idempotency-Key is checked before the body is read, and its
    422 must still speak FHIR to a FHIR client."""
    response = client.post("/v1/evaluations", content=json.dumps({"resourceType": "Bundle"}),
                           headers={**FHIR, "X-API-Key": intake_key, "Idempotency-Key": ""})
    outcome = assert_outcome(response, 422)
    assert outcome["issue"][0]["diagnostics"].startswith("headers.idempotency-key:")


def test_a_repeated_key_in_a_bundle_is_refused_naming_it(client, intake_key, database):
    body = b'{"resourceType": "Bundle", "type": "collection", "type": "batch", "entry": []}'
    outcome = assert_outcome(post_bundle(client, intake_key, body), 400)
    assert outcome["issue"][0]["expression"] == ["Bundle.type"]
    assert "more than once" in outcome["issue"][0]["diagnostics"]


def test_invalid_input_is_422_naming_the_element_and_nothing_is_stored(client, intake_key, database):
    broken = nrs(7)
    broken["valueInteger"] = "seven"
    outcome = assert_outcome(post_bundle(client, intake_key, bundle(patient(), broken)), 422)
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].resource.value.ofType(integer)"]
    outcome = assert_outcome(post_bundle(client, intake_key, bundle(nrs(70, "x") | {"valueInteger": 70})), 422)
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[0].resource.value.ofType(integer)"]
    outcome = assert_outcome(post_bundle(client, intake_key, bundle(patient()), policy="no-such-policy"), 422)
    assert "no-such-policy" in outcome["issue"][0]["diagnostics"]
    assert_outcome(post_bundle(client, intake_key, {"resourceType": "Patient"}), 422)
    assert_outcome(post_bundle(client, intake_key, bundle(patient(), identifier=None)), 422)
    with database.session() as session:
        assert session.scalar(select(Evaluation.id)) is None


def test_query_parameters_give_external_id_policy_and_service_date(client, intake_key):
    response = post_bundle(client, intake_key, bundle(patient("1950-06-01"), identifier=None), external_id="Q-7",
                           policy="isass-2023-restorative-neurostimulation", service_date="2026-05-31")
    assert response.status_code == 201, response.text
    result = response.json()
    assert (result["external_id"], result["service_date"]) == ("Q-7", "2026-05-31")
    age = next(e for f in result["flags"] for e in f["evidence"] if e["field"] == "patient.age_years")
    assert age["value"] == 75
    assert_outcome(post_bundle(client, intake_key, bundle(patient()), service_date="2026-5-31"), 422)


# --- the real files of shared/fhir-examples ---------------------------------------------------------

READ_BY_THE_MAPPER = [
    "fhirems_Observation-ex-ems-pain-score.json",
    "open-nursing-core-ig_Observation-example-pain-nrs.json",
    "cmmi-access-model_QuestionnaireResponse-OswestryDisabilityIndexExample.json",
    "test-ehr_o2teddy_01__patient.json",
    "test-ehr_o2teddy_03__condition.json",
    "test-ehr_o2teddy_03__observation_BMI.json",
    "test-ehr_o2teddy_procedure_kidney.json",
    "test-ehr_o2teddy_05__device-request.json",
    "us-core-6.1.0_patient-example.json",
    "us-core-6.1.0_condition-encounter-diagnosis-example1.json",
    "us-core-6.1.0_bmi.json",
    "us-core-6.1.0_Procedure-R4-defib-implant.json",
    "crd-pkg-2.0.1_ServiceRequest-example.json",
    "crd-pkg-2.0.1_DeviceRequest-example.json",
]
EXPECTED = {  # what the mapper reads from some of them
    "fhirems_Observation-ex-ems-pain-score.json": ("low_back_pain", "nrs", 7),
    "open-nursing-core-ig_Observation-example-pain-nrs.json": ("low_back_pain", "nrs", 6),
    "cmmi-access-model_QuestionnaireResponse-OswestryDisabilityIndexExample.json": ("low_back_pain", "odi_percent", 38),
    "test-ehr_o2teddy_03__condition.json": ("diagnosis_codes", None, ["J44.0"]),
}


def example(name):
    path = EXAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} is absent (shared/fhir-examples is not next to this checkout)")
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", READ_BY_THE_MAPPER)
def test_every_real_resource_the_mapper_reads_parses(client, intake_key, name):
    resource = example(name)
    response = post_bundle(client, intake_key, bundle(resource, identifier=f"real-{name[:40]}"), service_date="2027-01-01")
    assert response.status_code == 201, response.text
    if name in EXPECTED:
        section, field, value = EXPECTED[name]
        path = f"{section}.{field}" if field else section
        values = {e["field"]: e["value"] for i in response.json()["criteria"] + response.json()["flags"]
                  for e in i["evidence"]}
        values.update({e["field"]: e["value"] for e in response.json().get("other_evidence", [])})
        assert values[path] == value


def test_real_crd_draft_orders_with_unrelated_invalid_resources_do_not_sink_the_request(client, intake_key):
    request = example("inferno-crd-testkit_order_sign_hook_request.json")
    orders = [entry["resource"] for entry in request["context"]["draftOrders"]["entry"]]  # invalid R4, not read
    response = post_bundle(client, intake_key, bundle(patient(), nrs(7), *orders, identifier="inferno-1"))
    assert response.status_code == 201, response.text
    # Its own Bundle lacks the required Bundle.type: the envelope the engine reads is validated.
    outcome = assert_outcome(post_bundle(client, intake_key, request["context"]["draftOrders"], external_id="x"), 422)
    assert outcome["issue"][0]["expression"] == ["Bundle.type"]


@pytest.mark.parametrize("name", [
    "inferno-crd-testkit_order_sign_hook_request.json",
    "inferno-crd-testkit_order_select_hook_request.json",
    "crd-ri_order-sign-request_devicerequest_legacy.json",
])
def test_the_invalid_real_files_get_an_outcome_never_a_500(client, intake_key, name):
    document = example(name)
    assert_outcome(post_bundle(client, intake_key, document), 422)  # a CDS Hooks request is not a Bundle
    prefetched = [v for v in (document.get("prefetch") or {}).values() if isinstance(v, dict)]
    for candidate in [document["context"]["draftOrders"], *prefetched]:
        response = post_bundle(client, intake_key, candidate, external_id="x")
        assert response.status_code in (201, 422), response.text
        if response.status_code == 422:
            assert_outcome(response, 422)
    if name.startswith("crd-ri"):  # its Bundle has no type, and its Coverage no status
        outcome = assert_outcome(post_bundle(client, intake_key, document["prefetch"]["deviceRequestBundle"],
                                             external_id="x"), 422)
        assert outcome["issue"][0]["expression"] == ["Bundle.type"]
