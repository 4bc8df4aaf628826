"""DTR ``$questionnaire-package`` and the FHIR base's CapabilityStatement: every package the service
can produce (both policies, with and without context, 2.0.1 and 2.2 spellings) passes the
assertions of the Inferno DTR payer-server kit (tests/dtr_inferno.py)."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import FULL_CASE
from dtr_inferno import assert_inferno_static_package, bundles_of
from fhir_support import EXAMPLES

ISASS, MP623 = "isass-2023-restorative-neurostimulation", "mp-623-peripheral-nerve-stimulation"
FHIR = {"Content-Type": "application/fhir+json"}
COVERAGE = {"resourceType": "Coverage", "id": "cov-1", "status": "active",
            "beneficiary": {"reference": "Patient/pat-1"}, "payor": [{"reference": "Organization/payer"}]}
ORDER = {"resourceType": "ServiceRequest", "id": "order-1", "status": "draft", "intent": "order",
         "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "64568"}]},
         "subject": {"reference": "Patient/pat-1"}, "occurrenceDateTime": "2026-12-01"}


@pytest.fixture
def database_url(tmp_path) -> str:  # the operations read and write through the store's functions: SQLite suffices
    return f"sqlite:///{tmp_path / 'dtr.db'}"


def ask(*, coverage=COVERAGE, orders=(ORDER,), context=None, questionnaire=None, profile=None):
    parameters = [{"name": "coverage", "resource": coverage}] if coverage else []
    parameters += [{"name": "order", "resource": o} for o in orders]
    if context:
        parameters.append({"name": "context", "valueString": context})
    if questionnaire:
        parameters.append({"name": "questionnaire", "valueCanonical": questionnaire})
    body = {"resourceType": "Parameters", "parameter": parameters}
    if profile:
        body["meta"] = {"profile": [profile]}
    return body


def package(client, key, body, path="/fhir/Questionnaire/$questionnaire-package", **headers):
    return client.post(path, content=json.dumps(body), headers={**FHIR, "Authorization": f"Bearer {key}", **headers})


def evaluation_with_gaps(client, key, policy=ISASS):
    case = copy.deepcopy(FULL_CASE)
    case["policy"] = policy
    del case["low_back_pain"]["mechanical"], case["device"]["able_to_operate"]
    created = client.post("/v1/evaluations", json=case, headers={"X-API-Key": key})
    assert created.status_code == 201, created.text
    return created.json()


def questions(questionnaire):
    def walk(items):
        for item in items:
            if item["type"] not in ("group", "display"):
                yield item["linkId"]
            yield from walk(item.get("item", []))
    return list(walk(questionnaire.get("item", [])))


def test_an_order_selects_its_policy_and_the_package_passes_the_inferno_assertions(client, intake_key, evaluator):
    response = package(client, intake_key, ask())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert_inferno_static_package(response.json())
    (bundle,) = bundles_of(response.json())
    questionnaire = bundle["entry"][0]["resource"]
    version = evaluator.catalog.versions[ISASS][-1]
    assert set(questions(questionnaire)) == {p for rule in (*version.criteria, *version.flags) for p in rule.fields}
    draft = bundle["entry"][-1]["resource"]
    assert draft["subject"] == {"reference": "Patient/pat-1"}
    assert {"Coverage/cov-1", "ServiceRequest/order-1"} <= {e["valueReference"]["reference"]
                                                            for e in draft["extension"] if "valueReference" in e}


def test_each_policy_by_its_questionnaire_canonical(client, intake_key):
    for policy in (ISASS, MP623):
        canonical = f"http://testserver/v1/policies/{policy}/questionnaire"
        response = package(client, intake_key, ask(orders=(), questionnaire=canonical))
        assert response.status_code == 200, response.text
        assert_inferno_static_package(response.json())
        (bundle,) = bundles_of(response.json())
        assert bundle["entry"][0]["resource"]["url"] == canonical
        library = bundle["entry"][1]["resource"]
        assert library["resourceType"] == "Library" and library["name"].endswith("Prepopulation")


def test_with_context_the_package_asks_only_what_the_evaluation_is_missing(client, intake_key):
    for policy in (ISASS, MP623):
        result = evaluation_with_gaps(client, intake_key, policy)
        response = package(client, intake_key, ask(context=result["evaluation_id"]))
        assert response.status_code == 200, response.text
        assert_inferno_static_package(response.json())
        (bundle,) = bundles_of(response.json())
        questionnaire = bundle["entry"][0]["resource"]
        missing = set(result["missing_information"]) | {f for flag in result["flags"] for f in flag["missing"]}
        assert set(questions(questionnaire)) == missing and missing
        assert questionnaire["url"].endswith(f"/v1/evaluations/{result['evaluation_id']}/questionnaire")
        # DTR from PAS: only the context (and the coverage)
        alone = package(client, intake_key, ask(orders=(), context=result["evaluation_id"]), path="/fhir/$questionnaire-package")
        assert alone.status_code == 200
        assert bundles_of(alone.json())[0]["entry"][0]["resource"]["url"] == questionnaire["url"]


def test_dtr_22_clients_get_the_22_parameter_names(client, intake_key):
    profile = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/dtr-qpackage-input-parameters|2.2.0"
    response = package(client, intake_key, ask(profile=profile))
    assert response.status_code == 200
    assert [p["name"] for p in response.json()["parameter"]] == ["packagebundle"]
    assert_inferno_static_package(response.json(), name="packagebundle")
    older = package(client, intake_key, ask(profile=profile.replace("2.2.0", "2.0.1")))
    assert [p["name"] for p in older.json()["parameter"]] == ["PackageBundle"]


def test_the_inferno_kit_s_own_address_with_a_trailing_slash_and_the_real_coverage_example(client, intake_key):
    path = EXAMPLES / "crd-pkg-2.0.1_Coverage-example.json"
    if not path.exists():
        pytest.skip(f"{path} is not there")
    coverage = json.loads(path.read_text())
    response = package(client, intake_key, ask(coverage=coverage), path="/fhir/Questionnaire/$questionnaire-package/",
                       **{"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert_inferno_static_package(response.json())


def outcome(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"]
    return body["issue"]


def test_unknown_coverage_order_or_context_is_a_4xx_operation_outcome(client, intake_key):
    outcome(package(client, intake_key, ask(context="no-such-evaluation")), 404)
    other = dict(ORDER, code={"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99999"}]})
    (issue,) = outcome(package(client, intake_key, ask(orders=(other,))), 404)
    assert "99999" in issue["diagnostics"]
    (issue,) = outcome(package(client, intake_key, ask(coverage=None)), 400)
    assert "Coverage" in issue["diagnostics"]
    outcome(package(client, intake_key, ask(coverage={"reference": "Coverage/x"})), 400)
    outcome(package(client, intake_key, ask(orders=(), questionnaire="http://elsewhere/Questionnaire/q")), 404)
    outcome(package(client, intake_key, {"resourceType": "Bundle"}), 400)
    outcome(client.post("/fhir/Questionnaire/$questionnaire-package", content="{", headers=FHIR), 401)
    outcome(package(client, intake_key, "{"), 400)


def test_the_api_key_is_accepted_as_a_bearer_token_or_in_x_api_key(client, intake_key):
    body = json.dumps(ask())
    assert client.post("/fhir/$questionnaire-package", content=body, headers={**FHIR, "X-API-Key": intake_key}).status_code == 200
    (issue,) = outcome(client.post("/fhir/$questionnaire-package", content=body,
                                   headers={**FHIR, "Authorization": "Bearer wrong"}), 401)
    assert issue["code"] == "login"


def test_the_capability_statement_lists_every_fhir_operation(client):
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement" and statement["fhirVersion"] == "4.0.1"
    (rest,) = statement["rest"]
    operations = {(r["type"], o["name"]) for r in rest["resource"] for o in r.get("operation", [])}
    assert operations >= {("Questionnaire", "questionnaire-package"), ("Questionnaire", "log-questionnaire-errors"),
                          ("ValueSet", "expand"), ("Claim", "submit"), ("Claim", "inquire")}
    # every operation path the app routes under /fhir is listed
    routed = {r.path for r in client.app.routes if getattr(r, "path", "").startswith("/fhir/")}
    for path in routed:
        name = path.rstrip("/").rpartition("$")[2]
        if "$" in path:
            assert any(n == name for _, n in operations), path


def test_questions_the_rules_make_unnecessary_are_gated_by_enable_when(client, intake_key):
    gated = {ISASS: ("multifidus_dysfunction.imaging", "multifidus_dysfunction.prone_instability_test", "positive"),
             MP623: ("stimulation_trial.intraoperative_multifidus_contraction", "stimulation_trial.outcome", "successful")}
    for policy, (field, gate, value) in gated.items():
        canonical = f"http://testserver/v1/policies/{policy}/questionnaire"
        (bundle,) = bundles_of(package(client, intake_key, ask(orders=(), questionnaire=canonical)).json())
        items = {}

        def walk(found):
            for item in found:
                items[item["linkId"]] = item
                walk(item.get("item", []))
        walk(bundle["entry"][0]["resource"]["item"])
        assert items[field]["enableBehavior"] == "any"
        assert items[field]["enableWhen"] == [
            {"question": gate, "operator": "exists", "answerBoolean": False},
            {"question": gate, "operator": "!=", "answerCoding": {"system": f"urn:coverage-criteria:choices:{gate}",
                                                                 "code": value}}]
        assert sum("enableWhen" in item for item in items.values()) == 1


def test_an_evaluation_missing_nothing_gets_an_empty_form_and_says_so(client, intake_key):
    complete = client.post("/v1/evaluations", json=FULL_CASE, headers={"X-API-Key": intake_key}).json()
    assert complete["missing_information"] == []
    response = package(client, intake_key, ask(context=complete["evaluation_id"]))
    assert response.status_code == 200
    (bundle,) = bundles_of(response.json())
    assert "item" not in bundle["entry"][0]["resource"]
    (note,) = [p for p in response.json()["parameter"] if p["name"] == "operationOutcome"]
    assert "missing no information" in note["resource"]["issue"][0]["diagnostics"]
