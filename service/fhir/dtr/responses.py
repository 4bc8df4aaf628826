"""A completed DTR QuestionnaireResponse coming back (bare, or first in a Bundle with what it
references): which evaluation's case its answers complete.

The evaluation is named by the questionnaire the response answers (an evaluation's own
questionnaire, ``.../v1/evaluations/<id>/questionnaire``), or, for a policy's questionnaire, by a
CRD ``coverage-information`` extension's ``coverage-assertion-id`` on the response or on an order
in the Bundle (the id CRD handed out: an evaluation id). A response to a questionnaire this
service did not issue, or without a context it knows, is refused (404).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from service.fhir.answers import OWN_QUESTIONNAIRE
from service.fhir.outcome import OperationOutcomeError
from service.fhir.readers import RESPONSE_READ

COVERAGE_INFORMATION = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
_EVALUATION = re.compile(r"/v1/evaluations/([^/|]+)/questionnaire(?:\|[^/]*)?$")
_POLICY = re.compile(r"/v1/policies/([^/|]+)/questionnaire(?:\|([^/]*))?$")


@dataclass
class Submission:
    response: dict[str, Any]
    bundle: dict[str, Any]          # what the intake reads: the Bundle sent, or one holding the bare response
    evaluation_id: str
    policy_id: str | None = None    # the policy whose questionnaire was answered (None: an evaluation's)
    where: str = "QuestionnaireResponse"

    @property
    def reference(self) -> str:
        return f"QuestionnaireResponse/{self.response['id']}"


def read_submission(body: Any) -> Submission:
    """The response, the Bundle to read and the evaluation it completes; 4xx OperationOutcome otherwise."""
    if isinstance(body, dict) and body.get("resourceType") == "QuestionnaireResponse":
        response, where = body, "QuestionnaireResponse"
        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": response}]}
    elif isinstance(body, dict) and body.get("resourceType") == "Bundle":
        entries = body.get("entry") if isinstance(body.get("entry"), list) else []
        found = [(i, e["resource"]) for i, e in enumerate(entries) if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                 and e["resource"].get("resourceType") == "QuestionnaireResponse"]
        if not found:
            raise OperationOutcomeError.one("required", "The Bundle holds no QuestionnaireResponse.", "Bundle.entry", status=400)
        index, response = found[0]
        bundle, where = body, f"Bundle.entry[{index}].resource"
    else:
        raise OperationOutcomeError.one("structure", "Send a QuestionnaireResponse, or a Bundle holding one first.",
                                        status=400)
    if response.get("status") not in RESPONSE_READ:
        raise OperationOutcomeError.one("business-rule", f"Only a completed (or amended) response is read; this one is "
                                        f"{response.get('status')!r}.", f"{where}.status")
    if not isinstance(response.get("id"), str) or not response["id"]:
        response["id"] = str(uuid.uuid4())  # as a FHIR create does: evidence cites QuestionnaireResponse/<id>
    questionnaire = response.get("questionnaire")
    if not isinstance(questionnaire, str) or not OWN_QUESTIONNAIRE.search(questionnaire):
        raise OperationOutcomeError.one("not-found", "The response answers a questionnaire this service did not "
                                        f"issue ({questionnaire!r}); answer one from $questionnaire-package.",
                                        f"{where}.questionnaire", status=404)
    evaluation = _EVALUATION.search(questionnaire)
    if evaluation:
        return Submission(response, bundle, evaluation.group(1), None, where)
    policy = _POLICY.search(questionnaire)
    context = next(iter(assertion_ids(bundle)), None)
    if context is None:
        raise OperationOutcomeError.one(
            "not-found", "The response answers a policy's questionnaire but names no evaluation: give the CRD "
            "coverage-information extension (coverage-assertion-id) on the response or its order.", where, status=404)
    return Submission(response, bundle, context, policy.group(1) if policy else None, where)


def assertion_ids(value: Any) -> Iterator[str]:
    """Every CRD ``coverage-assertion-id`` in a resource or Bundle, response first."""
    if isinstance(value, dict):
        if value.get("url") == COVERAGE_INFORMATION:
            for part in value.get("extension", []):
                if isinstance(part, dict) and part.get("url") == "coverage-assertion-id" \
                        and isinstance(part.get("valueString"), str):
                    yield part["valueString"]
        for child in value.values():
            yield from assertion_ids(child)
    elif isinstance(value, list):
        for child in value:
            yield from assertion_ids(child)


def flag_replaced_values(base: dict[str, Any], earlier: dict[str, dict[str, Any]], read: Any, dictionary: Any) -> None:
    """Where an answer replaces a different value the evaluation's case had (from the chart or an
    earlier answer), keep both in the evidence (``conflict``) and say so in a note: the answer is
    used, as the later statement, and a reviewer sees what it replaced."""
    for path, source in read.fhir.provenance.items():
        if "link_id" not in source or "conflict" in source:
            continue
        section, dot, name = path.partition(".")
        before = base.get(section, {}).get(name) if dot and isinstance(base.get(section), dict) else base.get(path)
        now = read.case.get(section, {}).get(name) if dot else read.case.get(path)
        if before is None or before == now:
            continue
        label = dictionary.fields[path].label
        previous = {"value": before, **earlier.get(path, {"reference": "the evaluation's case"})}
        why = (f"{label}: the answer {now} ({source['reference']}) replaces {before} "
               f"({previous.get('reference')}, {previous.get('date') or 'undated'}) from the evaluation's case; "
               "the answer was used, being the later statement: a reviewer should confirm which is right.")
        source["conflict"] = {"answer": {"value": now, **source}, "chart": previous, "used": "answer", "why": why}
        read.fhir.notes.append({"field": path, "reference": source["reference"], "date": source.get("date"), "note": why})
