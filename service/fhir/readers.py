"""One reader per kind of ``fhir:`` source: which resources it reads, and the value each gives.

Readers see raw JSON resources. ``relevant`` decides, before validation and tolerant of any
shape, whether a resource is one the engine would read (only those are validated); ``read`` runs
on validated resources and returns ``Found`` values, each with the resource's date and the
FHIRPath of the element read. A unit, an answer type or a date the engine cannot read honestly is
reported as an ``Issue`` rather than read raw or skipped in silence.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any, Iterator

from service.fhir.dates import completed_months, completed_years, moment
from service.fhir.outcome import Issue
from service.fhir.parse import Located
from service.policy.sources import (
    Code,
    ConditionSource,
    ObservationSource,
    PatientSource,
    ProcedureSource,
    ScoredQuestionnaireSource,
    Source,
)

UCUM = "http://unitsofmeasure.org"
ORDINAL_URLS = ("http://hl7.org/fhir/StructureDefinition/ordinalValue",
                "http://hl7.org/fhir/StructureDefinition/itemWeight")
# Statuses that are read; every other status (preliminary, registered, cancelled, entered-in-error,
# unknown, not-done, in-progress, ...) is not.
OBSERVATION_READ = {"final", "amended", "corrected"}
RESPONSE_READ = {"completed", "amended"}
CONDITION_NOT_READ = {"refuted", "entered-in-error"}
# Statuses for which a resource is skipped without even being validated.
_NEVER_READ = {"entered-in-error", "cancelled", "refuted", "preliminary", "registered", "not-done",
               "stopped", "in-progress", "preparation", "on-hold", "unknown", "revoked"}


@dataclass(frozen=True)
class Found:
    """A value a resource gives for a field."""

    value: Any
    item: Located
    date: str | None          # the resource's date as written, its day only (2026-10-02)
    when: tuple               # sorts values oldest first; undated resources sort first of all
    expression: str           # FHIRPath of the element the value came from
    detail: dict[str, Any] | None = None  # more provenance: an answer's linkId, information-origin, author
    attested: bool = False    # read whatever its date (an answer to this service's questionnaire)


@dataclass
class Context:
    service_date: datetime.date
    questionnaires: dict[str, dict[str, Any]] = field(default_factory=dict)  # canonical url -> Questionnaire
    issues: list[Issue] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)  # what was not read, and why (shown in the result)


# --- dates ---------------------------------------------------------------------------------------

def _dated(item: Located, *paths: tuple[str, ...]) -> tuple[str | None, tuple]:
    """The first present date among ``paths`` (element names, nested): as written and as a sort key."""
    for path in paths:
        value: Any = item.resource
        for name in path:
            value = value.get(name) if isinstance(value, dict) else None
        parsed = moment(value)
        if parsed is not None:
            return parsed[0].isoformat(), (1, parsed[1])
    return None, (0,)


def resource_date(item: Located) -> tuple[str | None, tuple]:
    """The date a resource speaks for: effective, performed, recorded or authored."""
    return _dated(item, *_DATE_PATHS.get(item.type, ()))


_DATE_PATHS = {
    "Observation": (("effectiveDateTime",), ("effectivePeriod", "end"), ("effectivePeriod", "start"),
                    ("effectiveInstant",), ("issued",)),
    "Condition": (("recordedDate",), ("onsetDateTime",), ("onsetPeriod", "start")),
    "Procedure": (("performedDateTime",), ("performedPeriod", "end"), ("performedPeriod", "start")),
    "QuestionnaireResponse": (("authored",),),
}


# --- codes and statuses ---------------------------------------------------------------------------

def codings(concept: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """(position, coding) of a CodeableConcept, tolerant of any shape."""
    items = concept.get("coding") if isinstance(concept, dict) else None
    for index, coding in enumerate(items if isinstance(items, list) else []):
        if isinstance(coding, dict):
            yield index, coding


def matches(concept: Any, codes: tuple[Code, ...], prefix: bool = False) -> bool:
    return any(c.matches(coding.get("system"), coding.get("code"), prefix) for _, coding in codings(concept) for c in codes)


def _status(resource: dict[str, Any]) -> Any:
    status = resource.get("status")
    if status is None and resource.get("resourceType") == "Condition":
        status = next((c.get("code") for _, c in codings(resource.get("verificationStatus"))), None)
    return status


def maybe_read(resource: dict[str, Any]) -> bool:
    """False for a resource whose status says it is never read (so it is not validated either)."""
    return _status(resource) not in _NEVER_READ


# --- which resources a source reads ----------------------------------------------------------------

SOURCE_TYPES = {ObservationSource: "Observation", ConditionSource: "Condition", ProcedureSource: "Procedure",
                PatientSource: "Patient", ScoredQuestionnaireSource: "QuestionnaireResponse"}


def relevant(source: Source, item: Located) -> bool:
    resource = item.resource
    if not maybe_read(resource):
        return False
    if isinstance(source, ObservationSource):
        return item.type == "Observation" and matches(resource.get("code"), source.codes)
    if isinstance(source, ConditionSource):
        return item.type == "Condition" and matches(resource.get("code"), source.codes, prefix=True)
    if isinstance(source, ProcedureSource):
        return item.type == "Procedure" and matches(resource.get("code"), source.codes)
    if isinstance(source, PatientSource):
        return item.type == "Patient"
    if isinstance(source, ScoredQuestionnaireSource):
        return item.type == "QuestionnaireResponse"
    return False


# --- reading ---------------------------------------------------------------------------------------

def read(source: Source, item: Located, spec: Any, context: Context) -> Found | None:
    """The value ``item`` gives for the field ``spec`` through ``source``, or None."""
    if not relevant(source, item):
        return None
    reader = _READERS[type(source)]
    return reader(source, item, spec, context)


def _observation(source: ObservationSource, item: Located, spec: Any, context: Context) -> Found | None:
    resource = item.resource
    if resource.get("status") not in OBSERVATION_READ:
        return None
    date, when = resource_date(item)
    if "integer" in source.value_forms and isinstance(resource.get("valueInteger"), int):
        return Found(resource["valueInteger"], item, date, when, f"{item.path}.value.ofType(integer)")
    quantity = resource.get("valueQuantity")
    if "quantity" in source.value_forms and isinstance(quantity, dict) and "value" in quantity:
        value = quantity_value(quantity, source.units, spec, f"{item.path}.value.ofType(Quantity)", context)
        if value is not None:
            return Found(value, item, date, when, f"{item.path}.value.ofType(Quantity).value")
    return None  # another value form, or a dataAbsentReason: this resource gives no value


def quantity_value(quantity: dict[str, Any], units: dict[str, float], spec: Any, expression: str,
                   context: Context) -> float | int | None:
    """A Quantity's value in the field's unit; a unit not declared is an issue, never read raw."""
    if quantity.get("comparator"):
        context.issues.append(Issue("value", f"A value with comparator {quantity['comparator']!r} is not an exact "
                                    f"measurement; {spec.path} needs one.", f"{expression}.comparator"))
        return None
    system, code, unit = quantity.get("system"), quantity.get("code"), quantity.get("unit")
    name = code if code is not None and system in (None, UCUM) else None
    if name is None and code is None:
        name = unit if unit is not None else "1"  # no code: the unit text, or a pure number
    if name not in units:
        accepted = ", ".join(units)
        written = code if code is not None else unit
        context.issues.append(Issue(
            "value", f"Unit {written!r} is not accepted for {spec.path} ({spec.label}); accepted UCUM units: {accepted}.",
            f"{expression}.{'code' if code is not None else 'unit'}"))
        return None
    factor = units[name]
    value = quantity["value"]
    return value if factor == 1 else round(value * factor, 4)


def _condition(source: ConditionSource, item: Located, spec: Any, context: Context) -> Found | None:
    resource = item.resource
    if any(c.get("code") in CONDITION_NOT_READ for _, c in codings(resource.get("verificationStatus"))):
        return None
    date, when = resource_date(item)
    code = resource.get("code")
    expression = f"{item.path}.code"
    if source.read == "codes":
        found = [c["code"] for _, c in codings(code)
                 if any(s.matches(c.get("system"), c.get("code"), prefix=True) for s in source.codes)]
        return Found(found, item, date, when, expression) if found else None
    if source.read == "present":
        return Found(True, item, date, when, expression)
    onset = resource.get("onsetDateTime")
    expression = f"{item.path}.onset.ofType(dateTime)"
    if onset is None and isinstance(resource.get("onsetPeriod"), dict):
        onset, expression = resource["onsetPeriod"].get("start"), f"{item.path}.onset.ofType(Period).start"
    parsed = moment(onset, latest=True)  # a partial onset counts from its last day: a lower bound
    if parsed is None or parsed[0] > context.service_date:
        return None
    return Found(completed_months(parsed[0], context.service_date), item, date, when, expression)


def _procedure(source: ProcedureSource, item: Located, spec: Any, context: Context) -> Found | None:
    resource = item.resource
    if resource.get("status") != "completed":
        return None
    date, when = resource_date(item)
    if source.read == "present":
        return Found(True, item, date, when, f"{item.path}.code")
    for index, coding in codings(resource.get("outcome")):
        for code, value in source.outcomes.items():
            if code.matches(coding.get("system"), coding.get("code")):
                return Found(value, item, date, when, f"{item.path}.outcome.coding[{index}]")
    return None  # no outcome, or one not mapped (partially successful): the outcome stays unknown


def _patient(source: PatientSource, item: Located, spec: Any, context: Context) -> Found | None:
    birth = item.resource.get("birthDate")
    if not isinstance(birth, str) or len(birth) != 10:
        return None  # absent, or a partial date whose age is ambiguous
    born = datetime.date.fromisoformat(birth)
    if born > context.service_date:
        context.issues.append(Issue("value", f"The birth date {birth} is after the service date "
                                    f"{context.service_date.isoformat()}.", f"{item.path}.birthDate"))
        return None
    return Found(completed_years(born, context.service_date), item, birth, (0,), f"{item.path}.birthDate")


def _scored(source: ScoredQuestionnaireSource, item: Located, spec: Any, context: Context) -> Found | None:
    resource = item.resource
    if resource.get("status") not in RESPONSE_READ:
        return None
    entries = list(walk_items(resource, item.path))
    link_ids = {i.get("linkId") for i, _ in entries}
    questionnaire = context.questionnaires.get(resource.get("questionnaire"))
    known = questionnaire is not None and matches({"coding": questionnaire.get("code")}, source.questionnaire)
    if not known and len(link_ids & set(source.items)) < source.min_answered:
        return None  # not this instrument
    date, when = resource_date(item)
    ordinals = []
    for entry, path in entries:
        answers = entry.get("answer") if isinstance(entry.get("answer"), list) else []
        if not answers:
            continue
        answer = answers[0]
        coding = answer.get("valueCoding") if isinstance(answer.get("valueCoding"), dict) else {}
        is_score = entry.get("linkId") in source.score_link_ids or any(
            c.matches(coding.get("system"), coding.get("code")) for c in source.score_codes)
        number = _number(answer)
        if is_score and number is not None:
            return Found(number, item, date, when, f"{path}.answer[0]")
        if entry.get("linkId") in source.items and number is not None:
            ordinals.append(number)
    if len(ordinals) < source.min_answered:
        return None
    percent = sum(ordinals) / (source.item_maximum * len(ordinals)) * 100
    return Found(round(percent, 2), item, date, when, f"{item.path}.item")


def _number(answer: dict[str, Any]) -> float | None:
    """An answer's number: valueDecimal, valueInteger, valueQuantity.value, or the ordinal value
    (or item weight) of a valueCoding."""
    for key in ("valueDecimal", "valueInteger"):
        if isinstance(answer.get(key), (int, float)) and not isinstance(answer.get(key), bool):
            return answer[key]
    if isinstance(answer.get("valueQuantity"), dict) and isinstance(answer["valueQuantity"].get("value"), (int, float)):
        return answer["valueQuantity"]["value"]
    coding = answer.get("valueCoding")
    for extension in (coding.get("extension", []) if isinstance(coding, dict) else []):
        if isinstance(extension, dict) and extension.get("url") in ORDINAL_URLS:
            value = extension.get("valueDecimal", extension.get("valueInteger"))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return value
    return None


def walk_items(resource: dict[str, Any], path: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every item of a QuestionnaireResponse, nested ones too (also under answers), with its FHIRPath."""
    items = resource.get("item")
    for index, entry in enumerate(items if isinstance(items, list) else []):
        if not isinstance(entry, dict):
            continue
        here = f"{path}.item[{index}]"
        yield entry, here
        yield from walk_items(entry, here)
        answers = entry.get("answer")
        for a_index, answer in enumerate(answers if isinstance(answers, list) else []):
            if isinstance(answer, dict):
                yield from walk_items(answer, f"{here}.answer[{a_index}]")


_READERS = {
    ObservationSource: _observation,
    ConditionSource: _condition,
    ProcedureSource: _procedure,
    PatientSource: _patient,
    ScoredQuestionnaireSource: _scored,
}
