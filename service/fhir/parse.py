"""JSON -> FHIR resources, and validation of the ones the engine reads.

Validation uses fhir.resources 8.3.0, ``fhir.resources.R4B`` models (pinned in pyproject.toml):
its default package is R5, whose models reject valid R4 ServiceRequest, DeviceRequest and
Procedure resources; plain R4 models exist only in fhir.resources <= 6.5, which needs pydantic v1
(this service is on pydantic 2). R4B differs from R4 in none of the elements read here
(Patient, Observation, Condition, Procedure, Questionnaire, QuestionnaireResponse, ServiceRequest,
DeviceRequest), and in shared/fhir-crd.md §5 it accepted every valid R4 example and refused the same
invalid ones as three other validators. Only the resources the mapper reads are validated: an
unrelated invalid resource (a NutritionOrder without ``intent``, as in Inferno's CRD fixtures)
does not sink the request. Nor is an entry's envelope (``request``, ``response``, ``search``)
validated: only the Bundle itself, each entry's shape and ``fullUrl`` (which references resolve
against).

Bounded work: a Bundle holds at most ``MAX_ENTRIES`` entries (more: a 422 ``too-costly`` issue
naming ``Bundle.entry`` and both counts), counted by a fast C parse before the strict reader
builds anything, so padding a request with empty entries costs little; the entries not read
cost a type check each. The strict reader spends one Python call per JSON object, so a FHIR body
may open at most ``MAX_OBJECTS`` of them (``{`` counted in C, strings included: a 1 MiB
Bundle of real resources opens a few tens of thousands); more is refused the same way.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from service.errors import InvalidInput
from service.fhir.outcome import Issue, OperationOutcomeError
from service.json_input import parse_json

_PRIMITIVES = {
    "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id", "instant",
    "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid",
}
# Bundle.type's required binding (R4 bundle-type), which fhir.resources does not check.
BUNDLE_TYPES = ("document", "message", "transaction", "transaction-response", "batch", "batch-response",
                "history", "searchset", "collection")
MAX_ENTRIES = 1000  # entries in one Bundle, empty or not; a PAS request holds tens
MAX_OBJECTS = 100_000  # "{" in one FHIR body; the example Bundle (10 resources) has 139
_ISSUE_CODE = {"missing": "required", "model_field_validation.missing": "required", "extra_forbidden": "structure"}


@dataclass(frozen=True)
class Located:
    """A resource and where it sits in what was sent: its FHIRPath (``Bundle.entry[2].resource``)
    and the reference results cite (``Observation/pain-1``)."""

    resource: dict[str, Any]
    path: str
    full_url: str | None = None  # the entry's fullUrl, which urn:uuid references resolve against

    @property
    def type(self) -> str:
        return self.resource.get("resourceType", "")

    @property
    def reference(self) -> str:
        rid = self.resource.get("id")
        return f"{self.type}/{rid}" if isinstance(rid, str) and rid else f"{self.type} at {self.path}"


def read_json(body: bytes | str) -> Any:
    """Parsed JSON by the service's one JSON reader (service.json_input: repeated keys, deep
    nesting, giant numbers and bad encodings refused); unreadable JSON is a 400 OperationOutcome.
    A Bundle with more than MAX_ENTRIES entries is refused before that reader runs."""
    _refuse_padding(body)
    try:
        return parse_json(body)
    except InvalidInput as error:
        problem = error.errors[0]
        # a repeated key's path, from the root, which is a Bundle in every FHIR request
        expression = None if problem["field"] == "body" else f"Bundle.{problem['field']}"
        raise OperationOutcomeError.one("structure", problem["message"], expression, status=400) from None


def _refuse_padding(body: bytes | str) -> None:
    """Refuse a body opening more than MAX_OBJECTS objects, then count a Bundle's entries with
    orjson (C, about four times faster than the strict reader on a Bundle padded with empty
    entries) and refuse more than MAX_ENTRIES. What orjson cannot read is left to the strict
    reader, which says why."""
    braces = body.count(b"{" if isinstance(body, (bytes, bytearray)) else "{")
    if braces > MAX_OBJECTS:
        raise OperationOutcomeError.one(
            "too-costly", f"This body opens {braces} JSON objects (counting every '{{'); at most {MAX_OBJECTS} "
            "are read in one FHIR request, so none was. Send only the resources that document the request.")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    entries = document.get("entry") if isinstance(document, dict) else None
    if isinstance(entries, list):
        _check_entry_count(entries)


def _check_entry_count(entries: list[Any]) -> None:
    if len(entries) > MAX_ENTRIES:
        raise OperationOutcomeError.one(
            "too-costly", f"This Bundle holds {len(entries)} entries; at most {MAX_ENTRIES} are read in one "
            "request, so none was. Send only the resources that document the request.", "Bundle.entry")


def bundle_entries(bundle: Any) -> list[Located]:
    """The resources of a Bundle (any type), each with its FHIRPath; a body that is not a Bundle,
    a type outside R4's bundle types, more than MAX_ENTRIES entries, or entries that are not
    objects are refused naming the element."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise OperationOutcomeError.one("structure", "Expected a FHIR Bundle (resourceType \"Bundle\").",
                                        "Bundle" if isinstance(bundle, dict) else None)
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise OperationOutcomeError.one("structure", "Bundle.entry must be an array.", "Bundle.entry")
    _check_entry_count(entries)
    # The Bundle itself is validated without its entries; each entry's shape and fullUrl here, and
    # each resource if it is read.
    issues = validation_issues(Located({k: v for k, v in bundle.items() if k != "entry"}, "Bundle"))
    kind = bundle.get("type")
    if isinstance(kind, str) and kind not in BUNDLE_TYPES:
        issues.append(Issue("code-invalid", f"Bundle.type {kind!r} is not an R4 bundle type; expected one of "
                            f"{', '.join(BUNDLE_TYPES)}.", "Bundle.type"))
    located = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            issues.append(Issue("structure", "An entry must be an object.", f"Bundle.entry[{index}]"))
            continue
        full_url = entry.get("fullUrl")
        if full_url is not None and (not isinstance(full_url, str) or not full_url or full_url != full_url.strip()):
            issues.append(Issue("value", "An entry's fullUrl must be a URI (a string without surrounding spaces).",
                                f"Bundle.entry[{index}].fullUrl"))
            full_url = None
        resource = entry.get("resource")
        if resource is None:
            continue  # a request-only or deleted entry holds no resource to read
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            issues.append(Issue("structure", "An entry's resource must be an object with a resourceType.",
                                f"Bundle.entry[{index}].resource"))
            continue
        located.append(Located(resource, f"Bundle.entry[{index}].resource", full_url))
    if issues:
        raise OperationOutcomeError(issues)
    return located


def validation_issues(item: Located) -> list[Issue]:
    """The R4 problems of one resource (empty when valid), each with the FHIRPath of its element."""
    try:
        model = get_fhir_model_class(item.type)
    except (KeyError, ValueError, AttributeError):
        return [Issue("not-supported", f"Unknown resource type {item.type!r}.", f"{item.path}.resourceType")]
    try:
        model.model_validate(item.resource)
    except ValidationError as error:
        return [
            Issue(_ISSUE_CODE.get(e["type"], "value"), _message(e), _expression(model, item.path, e["loc"]))
            for e in error.errors(include_url=False, include_input=False)
        ]
    except (ValueError, TypeError, RecursionError) as error:  # fhir-core raises some of its own
        return [Issue("structure", f"Invalid {item.type}: {error}", item.path)]
    return []


def validate(items: Iterable[Located]) -> None:
    """Raise an OperationOutcomeError listing every problem of every given resource."""
    issues = [issue for item in items for issue in validation_issues(item)]
    if issues:
        raise OperationOutcomeError(issues)


def _message(error: dict[str, Any]) -> str:
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _expression(model: type, base: str, loc: Iterable[Any]) -> str:
    """A pydantic error location (aliases, list positions) as FHIRPath; choice elements such as
    ``valueQuantity`` are written ``value.ofType(Quantity)``."""
    path = base
    current: type | None = model
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        name = str(part)
        info = _fields(current).get(name) if current is not None else None
        choice = (info.json_schema_extra or {}).get("one_of_many") if info is not None else None
        if isinstance(choice, str) and name.startswith(choice) and name != choice:
            suffix = name[len(choice):]
            lowered = suffix[0].lower() + suffix[1:]
            path += f".{choice}.ofType({lowered if lowered in _PRIMITIVES else suffix})"
        else:
            path += f".{name.removeprefix('_')}"
        current = _element_model(info) if info is not None else None
    return path


@lru_cache(maxsize=None)
def _fields(model: type) -> dict[str, Any]:
    """A model's fields by their JSON name (``class`` for ``class_fhir``)."""
    return {(info.alias or name): info for name, info in model.model_fields.items()}


def _element_model(info: Any) -> type | None:
    """The FHIR model of an element's type (through Optional and List), or None for primitives."""
    annotation = info.annotation
    while typing.get_args(annotation):
        annotation = next((a for a in typing.get_args(annotation) if a is not type(None)), None)
    name = getattr(annotation, "__name__", "")
    if not name.endswith("Type"):
        return None
    try:
        return get_fhir_model_class(name.removesuffix("Type"))
    except (KeyError, ValueError, AttributeError):
        return None
