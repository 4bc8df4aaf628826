"""FHIR resources (or a Bundle) -> the plain JSON case, with the provenance of every value.

The mapping is data: each field's ``fhir:`` sources in ``rules/fields.yaml`` (``sources``), read by
``readers``. Rules: when several resources give a field, the latest dated on or before the service
date wins (undated ones rank below dated ones; on the same date, the later in the Bundle wins);
resources dated after the service date are ignored; a code list gathers the codes of every
resource read. Entered-in-error, refuted, cancelled and preliminary resources are not read. No
resource for a field leaves it out of the case: unknown, never false.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from service.fhir.outcome import OperationOutcomeError
from service.fhir.parse import Located, bundle_entries, validate
from service.fhir.dates import moment
from service.fhir.patients import one_patient
from service.fhir.answers import answers
from service.fhir.readers import SOURCE_TYPES, Context, Found, maybe_read, read, relevant, walk_items
from service.policy.sources import ScoredQuestionnaireSource, Source, parse_sources

__all__ = ["BundleCase", "FhirCase", "MAX_READ", "case_from_bundle", "case_from_located", "case_from_resources",
           "continued_evaluation", "field_sources", "one_patient"]

_ORDER_TYPES = ("ServiceRequest", "DeviceRequest")


@dataclass
class FhirCase:
    """The clinical sections read from FHIR (``payload``, plain case JSON) and, by field path, the
    resource each value came from (``provenance``: ``{"reference", "date"}``, a code list also
    lists every resource as ``references``) and the FHIRPath of its element (``expressions``)."""

    payload: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)
    expressions: dict[str, str] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)  # values not read, and conflicts, in words


MAX_READ = 200  # resources read (and validated) from one Bundle: a PAS request reads tens


@dataclass(frozen=True)
class _Plan:
    """What a dictionary reads, arranged for cheap look-ups: each field's sources, the sources by
    the resource type they read, and the QuestionnaireResponse linkIds that are read."""

    sources: dict[str, tuple[Source, ...]]
    by_type: dict[str, tuple[tuple[str, Source], ...]]
    link_ids: frozenset[str]


_PLANS: dict[int, tuple[Any, _Plan]] = {}


def _plan(dictionary: Any) -> _Plan:
    """The dictionary's plan, made once per dictionary."""
    cached = _PLANS.get(id(dictionary))
    if cached is None or cached[0] is not dictionary:
        parsed = {path: parse_sources(spec.fhir, spec.kind, spec.choices) for path, spec in dictionary.fields.items()}
        sources = {p: s for p, s in parsed.items() if s}
        by_type: dict[str, list[tuple[str, Source]]] = {}
        link_ids = set(dictionary.fields)
        for path, group in sources.items():
            for source in group:
                by_type.setdefault(SOURCE_TYPES[type(source)], []).append((path, source))
                if isinstance(source, ScoredQuestionnaireSource):
                    link_ids.update(source.items, source.score_link_ids)
        plan = _Plan(sources, {t: tuple(g) for t, g in by_type.items()}, frozenset(link_ids))
        cached = _PLANS[id(dictionary)] = (dictionary, plan)
    return cached[1]


def field_sources(dictionary: Any) -> dict[str, tuple[Source, ...]]:
    """Each field's parsed ``fhir:`` sources (fields without any are left out); parsed once per dictionary."""
    return _plan(dictionary).sources


def case_from_resources(resources: Iterable[dict[str, Any]], dictionary: Any, *,
                        service_date: datetime.date) -> FhirCase:
    """The case that ``resources`` (plain JSON, e.g. a CDS Hooks prefetch) document on ``service_date``.
    Raises OperationOutcomeError (expressions start at each resource's type) for invalid input or
    resources about more than one patient (``one_patient``). The caller bounds their number (CDS
    Hooks caps each prefetch key and says so in its answer)."""
    return case_from_located([Located(r, str(r.get("resourceType", "Resource"))) if isinstance(r, dict)
                              else Located({}, "Resource") for r in resources], dictionary, service_date)


def case_from_located(items: list[Located], dictionary: Any, service_date: datetime.date, *,
                      orders_too: bool = False, max_read: int | None = None) -> FhirCase:
    """Validate the resources the dictionary's sources read, read every value, keep the latest.
    Only those resources cost more than a type check: the others are neither validated nor read.
    The Patients and the resources read must be about one patient, and with ``orders_too`` the
    service and device requests too (a Bundle's order gives its service date). More than
    ``max_read`` resources read is refused (``too-costly``) before any is validated."""
    fields = dictionary.fields
    plan = _plan(dictionary)
    urls = {item.resource.get("url") for item in items if item.type == "Questionnaire"} - {None}
    read_items = [item for item in items if _is_read(item, plan, urls)]  # in request order
    if max_read is not None and len(read_items) > max_read:
        raise OperationOutcomeError.one(
            "too-costly", f"This request holds {len(read_items)} resources the evaluation would read; at most "
            f"{max_read} are read in one request, so none was. Send the latest ones for each finding.")
    wanted = {item.resource.get("questionnaire") for item in read_items if item.type == "QuestionnaireResponse"}
    questionnaires = [item for item in items if item.type == "Questionnaire" and item.resource.get("url") in wanted]
    patients = [item for item in items if item.type == "Patient"]
    orders = [item for item in items if item.type in _ORDER_TYPES] if orders_too else []
    validate(_unique(read_items + questionnaires))
    one_patient(_unique(patients + read_items + orders))

    context = Context(service_date, {q.resource["url"]: q.resource for q in questionnaires})
    found: dict[str, list[Found]] = {}
    for item in read_items:
        for path, source in plan.by_type.get(item.type, ()):
            value = read(source, item, fields[path], context)
            if value is not None:
                found.setdefault(path, []).append(value)
        for path, value in answers(item, fields, context):
            found.setdefault(path, []).append(value)
    if context.issues:
        raise OperationOutcomeError(context.issues)

    case = FhirCase(notes=list(context.notes))
    for path, candidates in found.items():
        usable = []
        for f in candidates:
            if f.attested or f.date is None or datetime.date.fromisoformat(f.date) <= service_date:
                usable.append(f)
            else:  # never dropped in silence: the result says what was not read
                case.notes.append({"field": path, "reference": f.item.reference, "date": f.date,
                                   "note": f"Dated after the service date {service_date.isoformat()}: not read "
                                           f"for {fields[path].label}."})
        if not usable:
            continue
        usable.sort(key=lambda f: f.when)  # stable: on the same date, the later resource ends last
        latest = usable[-1]
        if fields[path].kind == "code_list":
            value = list(dict.fromkeys(code for f in usable for code in f.value))
            references = list(dict.fromkeys(f.item.reference for f in usable))
            case.provenance[path] = {"reference": latest.item.reference, "date": latest.date, "references": references,
                                     **(latest.detail or {})}
        else:
            value = latest.value
            case.provenance[path] = {"reference": latest.item.reference, "date": latest.date, **(latest.detail or {})}
            conflict = _conflict(usable, fields[path])
            if conflict is not None:
                case.provenance[path]["conflict"] = conflict
                case.notes.append({"field": path, "reference": latest.item.reference, "date": latest.date,
                                   "note": conflict["why"]})
        case.expressions[path] = latest.expression
        section, dot, name = path.partition(".")
        if dot:
            case.payload.setdefault(section, {})[name] = value
        else:
            case.payload[path] = value
    return case


def _conflict(usable: list[Found], spec: Any) -> dict[str, Any] | None:
    """When the latest answer to a questionnaire and the latest value from the chart differ: both,
    which was used, and why (the later one, by the answer's authored date)."""
    answered = [f for f in usable if f.detail and "link_id" in f.detail]
    charted = [f for f in usable if not (f.detail and "link_id" in f.detail)]
    if not answered or not charted or answered[-1].value == charted[-1].value:
        return None
    answer, chart = answered[-1], charted[-1]
    used = "answer" if usable[-1] is answer else "chart"
    def described(f: Found) -> dict[str, Any]:
        return {"value": f.value, "reference": f.item.reference, "date": f.date, **(f.detail or {})}
    first, second = (answer, chart) if used == "answer" else (chart, answer)
    why = (f"{spec.label}: the questionnaire answer ({answer.value}, {answer.item.reference}) and the chart "
           f"({chart.value}, {chart.item.reference}, {chart.date or 'undated'}) differ; the {used}'s value "
           f"{first.value} was used, being the later ({first.date or 'undated'} against {second.date or 'undated'}): "
           "a reviewer should confirm which is right.")
    return {"answer": described(answer), "chart": described(chart), "used": used, "why": why}


def _is_read(item: Located, plan: _Plan, questionnaire_urls: set[Any]) -> bool:
    """Whether a source reads ``item``: a QuestionnaireResponse when it answers a Questionnaire of
    the request or one of its items has a linkId that is read (a field path, an item or the score
    of a scored instrument); any other resource when a source of its type matches it."""
    if item.type == "QuestionnaireResponse":
        return maybe_read(item.resource) and (
            item.resource.get("questionnaire") in questionnaire_urls
            or any(entry.get("linkId") in plan.link_ids for entry, _ in walk_items(item.resource, item.path)))
    return any(relevant(source, item) for _, source in plan.by_type.get(item.type, ()))


def _unique(items: list[Located]) -> list[Located]:
    return list({id(item): item for item in items}.values())


@dataclass
class BundleCase:
    """A whole case read from a Bundle: ``case`` is the plain JSON case the engine evaluates (and
    the store keeps), ``fhir`` its clinical part with provenance."""

    case: dict[str, Any]
    fhir: FhirCase


def case_from_bundle(bundle: Any, dictionary: Any, *, external_id: str | None = None, policy: str | None = None,
                     service_date: str | None = None, today: datetime.date | None = None,
                     base: dict[str, Any] | None = None) -> BundleCase:
    """The case a Bundle documents. ``external_id`` defaults to ``Bundle.identifier.value`` (an
    OperationOutcome when neither exists), ``service_date`` (YYYY-MM-DD) to the occurrence date of
    the Bundle's service or device request, else ``today``. With ``base`` (the stored case of the
    evaluation whose questionnaire the Bundle answers), the Bundle's values complete that case:
    its own values win, and the base gives the external_id, policy and service date it lacks."""
    items = bundle_entries(bundle)
    base = base or {}
    expressions: dict[str, str] = {}
    if external_id is None:
        identifier = bundle.get("identifier")
        external_id = identifier.get("value") if isinstance(identifier, dict) else None
        if external_id is not None:
            expressions["external_id"] = "Bundle.identifier.value"
        else:
            external_id = base.get("external_id")
        if external_id is None:
            raise OperationOutcomeError.one(
                "required", "external_id is needed: give Bundle.identifier.value or the external_id query parameter.",
                "Bundle.identifier.value")
    day: datetime.date | None = None
    if service_date is not None:
        parsed = moment(service_date) if len(service_date) == 10 else None
        if parsed is None:
            raise OperationOutcomeError.one("value", "The service_date query parameter must be a date (YYYY-MM-DD).")
        day = parsed[0]
    else:
        found = _order_date(items)
        if found is not None:
            day, expressions["service_date"] = found
        elif isinstance(base.get("service_date"), str):
            day = datetime.date.fromisoformat(base["service_date"])
    day = day or today or datetime.date.today()
    fhir = case_from_located(items, dictionary, day, orders_too=True, max_read=MAX_READ)
    fhir.expressions.update(expressions)
    case: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in fhir.payload.items():
        case[key] = {**case[key], **value} if isinstance(value, dict) and isinstance(case.get(key), dict) else value
    case.update(external_id=external_id, service_date=day.isoformat())
    if policy is not None:
        case["policy"] = policy
    return BundleCase(case, fhir)


_EVALUATION_QUESTIONNAIRE = re.compile(r"/v1/evaluations/([^/|]+)/questionnaire(?:\|[^/]*)?$")


def continued_evaluation(bundle: Any) -> str | None:
    """The evaluation whose questionnaire a QuestionnaireResponse of the Bundle answers, if any."""
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "QuestionnaireResponse" \
                and isinstance(resource.get("questionnaire"), str) and maybe_read(resource):
            match = _EVALUATION_QUESTIONNAIRE.search(resource["questionnaire"])
            if match:
                return match.group(1)
    return None


def _order_date(items: list[Located]) -> tuple[datetime.date, str] | None:
    """The occurrence date of the first service or device request that has one (validated first)."""
    for item in items:
        if item.type not in _ORDER_TYPES or not maybe_read(item.resource):
            continue
        resource = item.resource
        timing = resource.get("occurrenceTiming")
        events = timing.get("event") if isinstance(timing, dict) else None
        period = resource.get("occurrencePeriod")
        for value, path in (
            (resource.get("occurrenceDateTime"), "occurrence.ofType(dateTime)"),
            (period.get("start") if isinstance(period, dict) else None, "occurrence.ofType(Period).start"),
            (events[0] if isinstance(events, list) and events else None, "occurrence.ofType(Timing).event[0]"),
        ):
            if value is not None:
                validate([item])
                parsed = moment(value)
                if parsed is not None:
                    return parsed[0], f"{item.path}.{path}"
    return None

