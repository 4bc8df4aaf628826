"""QuestionnaireResponse items keyed by field path: each item whose ``linkId`` is a field's path
answers that field (no ``fhir:`` declaration needed).

Every answer read keeps, as provenance, the item's ``linkId`` and the DTR ``information-origin``
of the answer (``auto-client``, ``auto-server``, ``manual``, ``override``, and its author). An
answer to one of this service's own questionnaires (a policy's, or an evaluation's) attests the
patient's state as the request documents it: it is read whatever its ``authored`` (which records
when the form was signed, usually after the service date), and ranks by that date. An answer
outside the field's range is not read; the result says so (``Context.notes``), naming the item,
and the other answers are read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from service.fhir.outcome import Issue
from service.fhir.parse import Located
from service.fhir.readers import RESPONSE_READ, Context, Found, quantity_value, resource_date, walk_items

INFORMATION_ORIGIN = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/information-origin"
YES_NO = "http://terminology.hl7.org/CodeSystem/v2-0136"  # a yes/no question asked as a choice: Y / N
_YES_NO = {"Y": True, "N": False}
OWN_QUESTIONNAIRE = re.compile(r"/v1/(?:evaluations|policies)/[^/|]+/questionnaire(?:\|[^/]*)?$")

_ANSWER_FORMS = {
    "boolean": ("valueBoolean", "valueCoding"),
    "integer": ("valueInteger",),
    "number": ("valueDecimal", "valueInteger", "valueQuantity"),
    "enum": ("valueCoding", "valueString"),
    "code_list": ("valueCoding", "valueString"),
}


def answers_own_questionnaire(resource: dict[str, Any]) -> bool:
    questionnaire = resource.get("questionnaire")
    return isinstance(questionnaire, str) and OWN_QUESTIONNAIRE.search(questionnaire) is not None


def answers(item: Located, fields: dict[str, Any], context: Context) -> Iterator[tuple[str, Found]]:
    """The fields a QuestionnaireResponse answers: each item whose linkId is a field path."""
    resource = item.resource
    if item.type != "QuestionnaireResponse" or resource.get("status") not in RESPONSE_READ:
        return
    date, when = resource_date(item)
    attested = answers_own_questionnaire(resource)
    for entry, path in walk_items(resource, item.path):
        spec = fields.get(entry.get("linkId"))
        given = entry.get("answer")
        if spec is None or not isinstance(given, list) or not given:
            continue
        values = [_answer_value(spec, answer, f"{path}.answer[{i}]", context) for i, answer in enumerate(given)]
        if any(v is None for v in values):
            continue
        detail = {"link_id": spec.path, **origin(given[0], entry)}
        if spec.kind == "code_list":
            yield spec.path, Found(values, item, date, when, f"{path}.answer", detail, attested)
        elif len(values) > 1:
            context.issues.append(Issue("value", f"{spec.path} takes one answer, got {len(values)}.", f"{path}.answer"))
        elif _in_range(spec, values[0], item, date, context):
            yield spec.path, Found(values[0], item, date, when, f"{path}.answer[0]", detail, attested)


def origin(answer: Any, entry: dict[str, Any]) -> dict[str, Any]:
    """The DTR information-origin of an answer (or of its item): ``information_origin`` (its
    ``source`` code) and ``author`` (a reference), when given."""
    for holder in (answer, entry):
        for extension in holder.get("extension", []) if isinstance(holder, dict) else []:
            if not isinstance(extension, dict) or extension.get("url") != INFORMATION_ORIGIN:
                continue
            found: dict[str, Any] = {}
            for part in extension.get("extension", []):
                if not isinstance(part, dict):
                    continue
                if part.get("url") == "source" and isinstance(part.get("valueCode"), str):
                    found["information_origin"] = part["valueCode"]
                reference = part.get("valueReference")
                if part.get("url") == "author" and isinstance(reference, dict) and isinstance(reference.get("reference"), str):
                    found["author"] = reference["reference"]
            return found
    return {}


def _in_range(spec: Any, value: Any, item: Located, date: str | None, context: Context) -> bool:
    """Whether a numeric answer is within the field's bounds; if not, a note names the item."""
    if spec.kind not in ("integer", "number"):
        return True
    low, high = spec.minimum, spec.maximum
    if (low is None or value >= low) and (high is None or value <= high):
        return True
    bounds = " to ".join(str(b) for b in (low, high) if b is not None)
    side = f"from {bounds}" if low is not None and high is not None else (f"at least {low}" if low is not None
                                                                        else f"at most {high}")
    context.notes.append({"field": spec.path, "reference": item.reference, "date": date, "link_id": spec.path,
                          "value": value, "note": f"The answer {value} to {spec.label} is outside its range "
                                                  f"({side}); it was not read, and the other answers were."})
    return False


def _answer_value(spec: Any, answer: Any, path: str, context: Context) -> Any:
    forms = _ANSWER_FORMS[spec.kind]
    form = next((f for f in forms if isinstance(answer, dict) and f in answer), None)
    if form is None:
        context.issues.append(Issue("value", f"{spec.path} ({spec.label}) is answered with "
                                    f"{' or '.join(forms)}.", path))
        return None
    value = answer[form]
    expression = f"{path}.value.ofType({form.removeprefix('value')[0].lower() + form.removeprefix('value')[1:]})"
    if form == "valueQuantity":
        unit = getattr(spec, "unit", None)
        return quantity_value(value, {unit or "1": 1}, spec, f"{path}.value.ofType(Quantity)", context)
    if form == "valueCoding":
        expression = f"{path}.value.ofType(Coding).code"
        value = value.get("code") if isinstance(value, dict) else None
        if spec.kind == "boolean":
            if value not in _YES_NO:
                context.issues.append(Issue("code-invalid", f"{value!r} is not an answer for {spec.path}; expected "
                                            f"Y or N ({YES_NO}) or a boolean.", expression))
                return None
            return _YES_NO[value]
    if spec.kind == "enum" and value not in (spec.choices or {}):
        context.issues.append(Issue("code-invalid", f"{value!r} is not an answer for {spec.path}; expected one of "
                                    f"{', '.join(spec.choices or {})}.", expression))
        return None
    return value
