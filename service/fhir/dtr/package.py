"""The DTR questionnaire package (``Questionnaire/$questionnaire-package``, DTR STU 2.0.1 wire
format; the 2.2 parameter names for 2.2 clients).

A package Bundle holds the Questionnaire first, then the Library it names with ``cqf-library``
(CQL and ELM), the ValueSets that Library depends on (expanded), and one draft
QuestionnaireResponse with the Coverage and order as its context. Every reference between them is
version-specific (``url|version``) and every ``url`` appears once in a package. Each question
carries an ``initialExpression`` in ``text/cql`` naming the define of its field.
"""

from __future__ import annotations

import datetime
import html
import uuid
from dataclasses import dataclass, field
from typing import Any

from service.fhir.dtr.common import YES_NO
from service.fhir.dtr.library import Prepopulation, prepopulation
from service.fhir.outcome import Issue, OperationOutcomeError
from service.fhir.questionnaire import ITEM_CONTROL, ITEM_CONTROL_SYSTEM, for_evaluation, for_policy, policy_fields

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition"
DTR = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition"
DTR_QUESTIONNAIRE = f"{DTR}/dtr-std-questionnaire|2.0.1"
DTR_RESPONSE = f"{DTR}/dtr-questionnaireresponse|2.0.1"
CQF_LIBRARY = "http://hl7.org/fhir/StructureDefinition/cqf-library"
VARIABLE = "http://hl7.org/fhir/StructureDefinition/variable"
QR_CONTEXT = f"{DTR}/qr-context"
INTENDED_USE = f"{DTR}/intendedUse"
ORDER_TYPES = {  # CRD's order resources and where each carries its code
    "ServiceRequest": "code", "DeviceRequest": "codeCodeableConcept", "MedicationRequest": "medicationCodeableConcept",
    "NutritionOrder": None, "VisionPrescription": None, "CommunicationRequest": None, "Appointment": "serviceType",
    "Encounter": "type", "SupplyRequest": "itemCodeableConcept", "ImmunizationRecommendation": None,
}


@dataclass
class PackageRequest:
    """The operation's input, read from its Parameters."""

    coverage: list[dict[str, Any]]
    orders: list[dict[str, Any]] = field(default_factory=list)
    questionnaires: list[str] = field(default_factory=list)
    context: str | None = None
    dtr_22: bool = False  # the client speaks DTR 2.2: its parameter names

    @property
    def patient(self) -> dict[str, Any] | None:
        for resource in (*self.coverage, *self.orders):
            for element in ("beneficiary", "subject", "patient"):
                reference = resource.get(element)
                if isinstance(reference, dict) and isinstance(reference.get("reference"), str):
                    return {"reference": reference["reference"]}
        return None

    def order_codes(self) -> set[tuple[str, str]]:
        codes = set()
        for order in self.orders:
            element = ORDER_TYPES.get(str(order.get("resourceType")))
            concepts = order.get(element) if element else None
            for concept in concepts if isinstance(concepts, list) else [concepts]:
                for coding in (concept or {}).get("coding", []) if isinstance(concept, dict) else []:
                    if isinstance(coding, dict) and isinstance(coding.get("system"), str) and isinstance(coding.get("code"), str):
                        codes.add((coding["system"], coding["code"]))
        return codes


def read_request(parameters: Any) -> PackageRequest:
    """The input Parameters (``dtr-qpackage-input-parameters``); 400 naming the problem."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise OperationOutcomeError.one("structure", "The body must be a Parameters resource.", "Parameters", status=400)
    entries = parameters.get("parameter")
    if not isinstance(entries, list):
        raise OperationOutcomeError.one("required", "Parameters.parameter is missing.", "Parameters.parameter", status=400)
    request = PackageRequest(coverage=[], dtr_22=_speaks_22(parameters))
    issues = []
    for index, entry in enumerate(entries):
        where = f"Parameters.parameter[{index}]"
        name = entry.get("name") if isinstance(entry, dict) else None
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if name == "coverage":
            if isinstance(resource, dict) and resource.get("resourceType") == "Coverage":
                request.coverage.append(resource)
            else:
                issues.append(Issue("not-found", "coverage must be a Coverage resource; this service cannot look "
                                    "one up by reference.", f"{where}.resource"))
        elif name == "order":
            if isinstance(resource, dict) and resource.get("resourceType") in ORDER_TYPES:
                request.orders.append(resource)
            else:
                issues.append(Issue("invalid", f"order must be one of {', '.join(ORDER_TYPES)}.", f"{where}.resource"))
        elif name == "questionnaire":
            if isinstance(entry.get("valueCanonical"), str):
                request.questionnaires.append(entry["valueCanonical"])
            else:
                issues.append(Issue("invalid", "questionnaire is a valueCanonical.", f"{where}.valueCanonical"))
        elif name == "context":
            value = entry.get("valueString")
            if not isinstance(value, str) or not value.strip():
                issues.append(Issue("invalid", "context is a valueString: an evaluation id (CRD coverage-assertion-id "
                                    "or PAS request for information).", f"{where}.valueString"))
            else:
                request.context = value.strip()
    if not request.coverage and not issues:
        issues.append(Issue("required", "The operation needs the patient's Coverage (parameter coverage).",
                            "Parameters.parameter"))
    if not (request.orders or request.questionnaires or request.context) and not issues:
        issues.append(Issue("required", "Give a context (evaluation id), an order or a questionnaire canonical.",
                            "Parameters.parameter"))
    if issues:
        raise OperationOutcomeError(issues, status=400)
    return request


def _speaks_22(parameters: dict[str, Any]) -> bool:
    profiles = (parameters.get("meta") or {}).get("profile") if isinstance(parameters.get("meta"), dict) else None
    return any(isinstance(p, str) and "davinci-dtr" in p and p.rpartition("|")[2].startswith("2.2")
               for p in profiles or [])


# --- the package ------------------------------------------------------------------------------

_LIBRARIES: dict[tuple[int, str, str], tuple[Any, Prepopulation]] = {}


def library_for(dictionary: Any, version: Any, base: str) -> Prepopulation:
    """The pre-population library of a policy version under ``base`` (built once)."""
    from service.fhir.intake import field_sources

    key = (id(dictionary), version.key, base)
    cached = _LIBRARIES.get(key)
    if cached is None or cached[0] is not dictionary:
        built = prepopulation(dictionary, field_sources(dictionary), policy_fields(version), policy_id=version.id,
                              policy_version=version.version, title=version.title, base=base,
                              status="draft" if version.status == "draft" else "active")
        cached = _LIBRARIES[key] = (dictionary, built)
    return cached[1]


def policy_questionnaire_url(root: str, policy_id: str) -> str:
    return f"{root}/v1/policies/{policy_id}/questionnaire"


def evaluation_questionnaire_url(root: str, evaluation_id: str) -> str:
    return f"{root}/v1/evaluations/{evaluation_id}/questionnaire"


def package_for_policy(dictionary: Any, version: Any, request: PackageRequest, *, root: str) -> dict[str, Any]:
    """The package of every field a policy version reads."""
    library = library_for(dictionary, version, f"{root}/fhir")
    base = for_policy(dictionary, version, policy_questionnaire_url(root, version.id))
    return _bundle(dtr_form(base, library, version), library, request)


def package_for_evaluation(dictionary: Any, version: Any, result: dict[str, Any], request: PackageRequest, *,
                           root: str) -> dict[str, Any]:
    """The package of an evaluation: its questionnaire asks only what the evaluation is missing."""
    library = library_for(dictionary, version, f"{root}/fhir")
    base = for_evaluation(dictionary, result, evaluation_questionnaire_url(root, result["evaluation_id"]), version)
    return _bundle(dtr_form(base, library, version), library, request)


def dtr_form(questionnaire: dict[str, Any], library: Prepopulation, version: Any) -> dict[str, Any]:
    """An SDC questionnaire made a DTR one: the library, the launch context, a CQL initial
    expression on each question, a narrative and the policy's effective period. The questionnaire
    given (freshly built: ``for_policy`` / ``for_evaluation``) is changed in place and returned."""
    form = questionnaire
    form["meta"] = {"profile": [*form.get("meta", {}).get("profile", []), DTR_QUESTIONNAIRE]}
    form["version"] = form.get("version") or version.version
    title = html.escape(form.get("title", ""))
    form["text"] = {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{title}</p>'
                    "<p>Answers pre-filled from the chart (CQL) support a reviewer's determination; they are not "
                    "a coverage decision.</p></div>"}
    form["extension"] = [
        {"url": CQF_LIBRARY, "valueCanonical": library.canonical},
        {"url": f"{SDC}/sdc-questionnaire-launchContext", "extension": [
            {"url": "name", "valueCoding": {"system": "http://hl7.org/fhir/uv/sdc/CodeSystem/launchContext",
                                            "code": "patient"}},
            {"url": "type", "valueCode": "Patient"}]},
        {"url": VARIABLE, "valueExpression": {"name": "asOf", "language": "text/cql",
                                              "expression": f'"{library.name}"."As Of"'}},
    ]
    period = {"start": version.effective_from.isoformat()}
    if version.effective_to is not None:
        period["end"] = version.effective_to.isoformat()
    form["effectivePeriod"] = period
    yes_no = set()
    for item in _questions(form.get("item", [])):
        if item["type"] == "boolean":
            _as_yes_no(item)
            yes_no.add(item["linkId"])
        elif item["type"] == "choice" and len(item.get("answerOption", [])) <= RADIO_AT_MOST:
            item["extension"] = [*item.get("extension", []), _control("radio-button", "Radio Button")]
        expression = {"url": f"{SDC}/sdc-questionnaire-initialExpression", "valueExpression": {
            "language": "text/cql", "expression": library.expression(item["linkId"], answer=item["linkId"] in yes_no)}}
        item["extension"] = [*item.get("extension", []), expression]
    for item in _questions(form.get("item", [])):
        for condition in item.get("enableWhen", []):
            if condition["question"] in yes_no and "answerBoolean" in condition and condition["operator"] != "exists":
                condition["answerCoding"] = _YES if condition.pop("answerBoolean") else _NO
    return form


RADIO_AT_MOST = 6  # choices shown at once as radio buttons (more: a drop-down list)
_YES, _NO = {"system": YES_NO, "code": "Y", "display": "Yes"}, {"system": YES_NO, "code": "N", "display": "No"}


def _as_yes_no(item: dict[str, Any]) -> None:
    """A yes/no question as a choice of Yes or No (radio buttons): a form then starts with neither
    chosen, where a boolean widget starts on "Not answered"; the intake reads Y / N as true / false."""
    item["type"] = "choice"
    item["answerOption"] = [{"valueCoding": dict(_YES)}, {"valueCoding": dict(_NO)}]
    item["extension"] = [*item.get("extension", []), _control("radio-button", "Radio Button")]


def _control(code: str, display: str) -> dict[str, Any]:
    return {"url": ITEM_CONTROL, "valueCodeableConcept": {"coding": [
        {"system": ITEM_CONTROL_SYSTEM, "code": code, "display": display}]}}


def _questions(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for item in items:
        if item.get("type") not in ("group", "display"):
            found.append(item)
        found += _questions(item.get("item", []))
    return found


def _bundle(form: dict[str, Any], library: Prepopulation, request: PackageRequest) -> dict[str, Any]:
    canonical = f"{form['url']}|{form['version']}"
    draft: dict[str, Any] = {"resourceType": "QuestionnaireResponse", "meta": {"profile": [DTR_RESPONSE]},
                             "extension": _contexts(request)
                             + [{"url": INTENDED_USE, "valueCodeableConcept": {"coding": [{
                                 "system": "http://hl7.org/fhir/us/davinci-dtr/CodeSystem/temp", "code": "auth"}]}}],
                             "questionnaire": canonical, "status": "in-progress"}
    if request.patient:
        draft["subject"] = request.patient
    resources = [form, library.library, *library.value_sets, draft]
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"profile": [f"{DTR}/DTR-QPackageBundle|2.0.1"]},
            "type": "collection", "timestamp": now,
            "entry": [{"fullUrl": _full_url(r), "resource": r} for r in resources]}


def _full_url(resource: dict[str, Any]) -> str:
    return resource.get("url") or f"urn:uuid:{uuid.uuid4()}"


def _contexts(request: PackageRequest) -> list[dict[str, Any]]:
    contexts = []
    for resource in (*request.coverage, *request.orders):
        if resource.get("id"):
            contexts.append({"url": QR_CONTEXT, "valueReference": {"reference": f"{resource['resourceType']}/{resource['id']}"}})
    return contexts


def parameters(bundles: list[dict[str, Any]], request: PackageRequest,
               outcome: dict[str, Any] | None = None) -> dict[str, Any]:
    """The output Parameters: ``PackageBundle`` (2.0.1, 2.1) or ``packagebundle`` (2.2) per Bundle."""
    name = "packagebundle" if request.dtr_22 else "PackageBundle"
    result: dict[str, Any] = {"resourceType": "Parameters", "parameter": [{"name": name, "resource": b} for b in bundles]}
    if outcome is not None:
        result["parameter"].append({"name": "outcome" if request.dtr_22 else "operationOutcome", "resource": outcome})
    return result
