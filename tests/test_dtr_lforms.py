"""The DTR questionnaire in a real SDC renderer: LHC-Forms (npm lforms, pinned in tests/js) in
Debian's Chromium shows every item with its answer options, units and help, obeys enableWhen,
takes the answers the CQL pre-filled from the chart, is filled in by clicking, and exports a
QuestionnaireResponse that ``POST /fhir/QuestionnaireResponse`` accepts: the evaluation then
misses nothing."""

from __future__ import annotations

import copy

import pytest
from conftest import FULL_CASE
from dtr_support import chart_with_gaps, fetch_package, post_response, prefill_with_cql, prefilled_response
from lforms_page import choose, exported, lforms_page, show, shown, type_number, why_not

YES_NO = "http://terminology.hl7.org/CodeSystem/v2-0136"
CHOICES = "urn:coverage-criteria:choices:"
# what the CRD prefetch did not hold (the chart has them) and what only the clinician can say
FROM_CHART = ("patient.bmi", "low_back_pain.nrs", "low_back_pain.odi_percent", "low_back_pain.duration_months",
              "conservative_care.physical_therapy_outcome")
FROM_CLINICIAN = ("low_back_pain.mechanical", "device.able_to_operate", "multifidus_dysfunction.prone_instability_test",
                  "multifidus_dysfunction.imaging", "conservative_care.medication_outcome")

pytestmark = pytest.mark.skipif(why_not() is not None, reason=why_not() or "")


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'dtr.db'}"


def questions(items):
    for item in items:
        if item["type"] not in ("group", "display"):
            yield item
        yield from questions(item.get("item", []))


def test_lhc_forms_renders_the_package_prefills_from_cql_and_its_answers_complete_the_evaluation(client, intake_key, tmp_path):
    case = copy.deepcopy(FULL_CASE)
    for path in (*FROM_CHART, *FROM_CLINICIAN):
        section, _, name = path.partition(".")
        del case[section][name]
    first = client.post("/v1/evaluations", json=case, headers={"X-API-Key": intake_key}).json()
    package = fetch_package(client, intake_key, context=first["evaluation_id"])
    questionnaire = package["entry"][0]["resource"]
    asked = {item["linkId"]: item for item in questions(questionnaire["item"])}
    assert set(asked) == set(FROM_CHART) | set(FROM_CLINICIAN)

    values = prefill_with_cql(package, chart_with_gaps(), first["service_date"])  # the DTR app's CQL run
    assert set(values) == set(FROM_CHART)  # what the chart holds, and nothing the clinician must say
    draft = prefilled_response(questionnaire, values)

    with lforms_page() as page:
        show(page, questionnaire, draft)
        text = page.locator("#form").inner_text()
        for item in asked.values():  # every item, its options and its unit in words
            assert item["text"] in text, item["linkId"]
            for option in item.get("answerOption", []):
                assert page.locator(f'[id="{item["linkId"]}/1/1|{option["valueCoding"]["system"]}|'
                                    f'{option["valueCoding"]["code"]}"]').is_visible(), (item["linkId"], option)
        assert page.locator('input[id="unit_patient.bmi/1/1"]').input_value() == "kg/m²"
        assert page.locator('input[id="patient.bmi/1/1"]').input_value() == "31.2"  # pre-filled by the CQL
        assert page.locator('input[id="low_back_pain.nrs/1/1"]').input_value() == "7"
        assert "Not Answered" not in text  # yes/no questions start with neither answer chosen
        # enableWhen: imaging is asked unless the prone instability test is positive
        assert shown(page, "multifidus_dysfunction.imaging")
        choose(page, "multifidus_dysfunction.prone_instability_test", CHOICES + "multifidus_dysfunction.prone_instability_test", "positive")
        assert not shown(page, "multifidus_dysfunction.imaging")
        choose(page, "multifidus_dysfunction.prone_instability_test", CHOICES + "multifidus_dysfunction.prone_instability_test", "negative")
        assert shown(page, "multifidus_dysfunction.imaging")
        # the clinician's part, by clicking; a pre-filled value corrected by typing
        choose(page, "low_back_pain.mechanical", YES_NO, "Y")
        choose(page, "device.able_to_operate", YES_NO, "Y")
        choose(page, "multifidus_dysfunction.imaging", CHOICES + "multifidus_dysfunction.imaging", "atrophy_or_fatty_infiltration")
        choose(page, "conservative_care.medication_outcome", CHOICES + "conservative_care.medication_outcome", "failed")
        type_number(page, "low_back_pain.nrs", 8)
        page.screenshot(path=str(tmp_path / "dtr-form.png"), full_page=True)
        response = exported(page)
        assert not page.errors, page.errors

    assert response["resourceType"] == "QuestionnaireResponse"
    response["status"] = "completed"  # the clinician signs the form
    stored = post_response(client, intake_key, response)
    assert stored.status_code == 201, stored.text
    result = client.get(stored.headers["Location"], headers={"X-API-Key": intake_key}).json()
    assert result["missing_information"] == []
    found = {e["field"]: e for c in (*result["criteria"], *result["flags"]) for e in c["evidence"]}
    assert found["low_back_pain.nrs"]["value"] == 8 and found["patient.bmi"]["value"] == 31.2
    assert found["low_back_pain.mechanical"]["value"] is True
    assert found["multifidus_dysfunction.prone_instability_test"]["value"] == "negative"
    assert found["low_back_pain.mechanical"]["source"]["link_id"] == "low_back_pain.mechanical"
