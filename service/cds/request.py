"""A CDS Hooks call as the service reads it: the request body (CDS Hooks 2.0, CRD's extensions),
the draft orders the service's policy answers for, the resources a prefetch value holds, and
the one patient the call is about. Errors a client can fix are a :class:`HookError`: a 4xx
status and an OperationOutcome naming the element.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from service.cds.discovery import CRD_VERSIONS, Service
from service.cds.fhir_servers import BadUrl, parse
from service.errors import field_path
from service.fhir.outcome import Issue, operation_outcome

ORDER_TYPES = ("ServiceRequest", "DeviceRequest")
# Orders of the policy evaluated in one call; more are named in a card, never evaluated silently.
MAX_ORDERS = 20
# Clinical resources (prefetch and EHR reads together) one call reads; more are said in the answer.
MAX_RESOURCES = 2000
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")  # a bearer token: visible ASCII (it goes into a header)
_PATIENT_REFERENCE = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


class HookError(Exception):
    """A call that cannot be answered as asked: ``status`` and an OperationOutcome."""

    def __init__(self, status: int, issues: list[Issue]):
        super().__init__("; ".join(issue.diagnostics for issue in issues))
        self.status = status
        self.outcome = operation_outcome(issues)

    @classmethod
    def one(cls, status: int, message: str, expression: str | None = None, code: str = "invalid") -> HookError:
        return cls(status, [Issue(code, message, expression)])


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")


class FhirAuthorization(_Request):
    access_token: str = Field(min_length=1, max_length=4096)
    token_type: str = "Bearer"

    @field_validator("access_token")
    @classmethod
    def _visible_ascii(cls, value: str) -> str:
        if not _TOKEN.fullmatch(value):
            raise ValueError("must be visible ASCII characters (it is sent in an HTTP header)")
        return value


class Context(_Request):
    patientId: str = Field(min_length=1, max_length=64)
    draftOrders: dict[str, Any]
    selections: list[str] | None = None

    @field_validator("patientId")
    @classmethod
    def _fhir_id(cls, value: str) -> str:
        if not _FHIR_ID.fullmatch(value) or value in (".", ".."):
            raise ValueError("must be a FHIR id (letters, digits, '-' and '.', at most 64)")
        return value


class HookRequest(_Request):
    hook: str
    hookInstance: str = Field(min_length=1, max_length=128)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: Context
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None

    @field_validator("fhirServer")
    @classmethod
    def _plain_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse(value)
            except BadUrl as error:
                raise ValueError(f"must be the base URL of a FHIR server, not {error}") from None
        return value


def parse_request(body: Any) -> HookRequest:
    try:
        return HookRequest.model_validate(body)
    except ValidationError as error:
        raise HookError(400, [Issue("structure", e["msg"], field_path(e["loc"]))
                              for e in error.errors(include_url=False, include_input=False)]) from None


def answer_version(request: HookRequest) -> tuple[int, ...]:
    """The CRD version the answer is shaped for: ``davinci-crd.requestedVersion`` (major.minor, a
    patch level allowed) when the service offers it, else 2.1 (which 2.0.1 clients accept too).
    A version the service does not offer is an error (CRD 2.2: the client SHALL get one)."""
    raw = (request.extension or {}).get("davinci-crd.requestedVersion")
    if raw is None:
        return (2, 1)
    parts = raw.split(".") if isinstance(raw, str) else []
    if len(parts) in (2, 3) and all(p.isdigit() and len(p) <= 3 for p in parts) and ".".join(parts[:2]) in CRD_VERSIONS:
        return tuple(int(p) for p in parts[:2])
    raise HookError.one(422, f"This service answers in CRD versions {', '.join(CRD_VERSIONS)} (discovery lists "
                        "them in davinci-crd.version); the version requested is not one of them.",
                        "extension.davinci-crd.requestedVersion", "not-supported")


def coverage_info_wanted(request: HookRequest) -> bool:
    """False when the client's ``davinci-crd.configuration`` turns ``coverage-info`` off (CRD dev-14)."""
    configuration = (request.extension or {}).get("davinci-crd.configuration")
    return not (isinstance(configuration, dict) and configuration.get("coverage-info") is False)


def matching_orders(request: HookRequest, service: Service) -> list[dict[str, Any]]:
    """The draft ServiceRequests and DeviceRequests coded as the service's policy says (on
    order-select: only those selected), in the order the client sent them."""
    bundle = request.context.draftOrders
    if bundle.get("resourceType") != "Bundle" or not isinstance(bundle.get("entry", []), list):
        raise HookError.one(400, "draftOrders must be a Bundle of orders.", "context.draftOrders")
    selected = set(request.context.selections or []) if request.hook == "order-select" else None
    wanted = {(o.system, o.code) for o in service.orders}
    found = []
    for entry in bundle.get("entry", []):
        order = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(order, dict) or order.get("resourceType") not in ORDER_TYPES:
            continue
        if order.get("status") != "draft":
            continue
        if selected is not None and f"{order['resourceType']}/{order.get('id')}" not in selected:
            continue
        concept = order.get("code") if order["resourceType"] == "ServiceRequest" else order.get("codeCodeableConcept")
        codings = concept.get("coding") if isinstance(concept, dict) else None
        if isinstance(codings, list) and any(isinstance(c, dict) and (c.get("system"), c.get("code")) in wanted
                                             for c in codings):
            found.append(order)
    return found


def resources_of(value: Any, resource_type: str | None = None) -> list[dict[str, Any]]:
    """The resources a prefetch value holds: itself, or a Bundle's entries (OperationOutcomes,
    which a client may send for a failed prefetch, are not data)."""
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        entries = value.get("entry") if isinstance(value.get("entry"), list) else []
        found = [e.get("resource") for e in entries if isinstance(e, dict)]
    else:
        found = [value]
    return [r for r in found if isinstance(r, dict) and r.get("resourceType") not in (None, "OperationOutcome")
            and (resource_type is None or r["resourceType"] == resource_type)]


def check_one_patient(resources: list[dict[str, Any]], patient_id: str, where: str | None = None) -> None:
    """Every resource is about the call's patient (``context.patientId``): a Patient with that id,
    anything else naming ``Patient/<that id>`` as its subject or patient. A resource naming no
    patient could be anybody's, so it is refused too: two patients never make one case."""
    issues = []
    for resource in resources:
        kind = resource.get("resourceType")
        label = f"{kind}/{resource.get('id')}" if isinstance(resource.get("id"), str) else f"A {kind}"
        if kind == "Patient":
            if resource.get("id") != patient_id:
                issues.append(Issue("business-rule", f"{label} is not the patient context.patientId names.",
                                    where or "Patient.id"))
            continue
        named = [_patient_of(resource.get(element)) for element in ("subject", "patient") if element in resource]
        named = [n for n in named if n is not None]
        if not named:
            issues.append(Issue("business-rule", f"{label} names no patient (subject or patient reference); "
                                "every resource must be about context.patientId.", where or f"{kind}.subject"))
        elif any(n != patient_id for n in named):
            issues.append(Issue("business-rule", f"{label} is about another patient than context.patientId.",
                                where or f"{kind}.subject.reference"))
    if issues:
        raise HookError(400, issues[:20])


def _patient_of(reference: Any) -> str | None:
    text = reference.get("reference") if isinstance(reference, dict) else None
    match = _PATIENT_REFERENCE.search(text) if isinstance(text, str) else None
    return match.group(1) if match else None


def service_date(order: dict[str, Any], today: datetime.date) -> datetime.date:
    """The order's occurrence date, else today."""
    period = order.get("occurrencePeriod") if isinstance(order.get("occurrencePeriod"), dict) else {}
    for raw in (order.get("occurrenceDateTime"), period.get("start")):
        if isinstance(raw, str) and len(raw) >= 10:
            try:
                return datetime.date.fromisoformat(raw[:10])
            except ValueError:
                pass
    return today
