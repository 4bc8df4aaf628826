"""One CDS Hooks call (``order-sign`` or ``order-select``), from request to answer.

Find the draft orders the service's policy answers for; no such order, no answer (``{"cards":
[]}``). Otherwise take the one Coverage, gather the clinical resources from prefetch and read
what prefetch lacks from the EHR's FHIR server, map them to a case, evaluate and store it (its
``external_id`` is the ``hookInstance``) and answer with a coverage-information update of each
order. Errors a client can fix are 400 with an OperationOutcome.
"""

from __future__ import annotations

import datetime
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.cds import coverage_information as ci
from service.cds.auth import Client
from service.cds.discovery import Service
from service.cds.ehr_client import EhrUnavailable, fill, read_missing
from service.errors import InvalidInput, field_path
from service.fhir.intake import FhirCase
from service.fhir.outcome import Issue, OperationOutcomeError, operation_outcome

BUDGET_SECONDS = 5.0
# Time kept back from the budget for mapping, evaluating, storing and answering.
ANSWER_RESERVE_SECONDS = 1.0
ORDER_TYPES = ("ServiceRequest", "DeviceRequest")
CLINICAL_KEYS = ("patient", "observations", "conditions", "procedures", "questionnaireResponses")


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
    access_token: str = Field(min_length=1)
    token_type: str = "Bearer"


class Context(_Request):
    patientId: str = Field(min_length=1, max_length=64)
    draftOrders: dict[str, Any]
    selections: list[str] | None = None


class HookRequest(_Request):
    hook: str
    hookInstance: str = Field(min_length=1, max_length=128)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: Context
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None


def parse_request(body: Any) -> HookRequest:
    try:
        return HookRequest.model_validate(body)
    except ValidationError as error:
        raise HookError(400, [Issue("structure", e["msg"], field_path(e["loc"]))
                              for e in error.errors(include_url=False, include_input=False)]) from None


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


NO_ANSWER = {"cards": []}


def requested_version(request: HookRequest) -> tuple[int, ...]:
    raw = (request.extension or {}).get("davinci-crd.requestedVersion")
    try:
        return tuple(int(part) for part in str(raw).split(".")[:2])
    except ValueError:
        return ()


def matching_orders(request: HookRequest, service: Service) -> list[dict[str, Any]]:
    """The draft ServiceRequests and DeviceRequests coded as the service's policy says (on
    order-select: only those selected)."""
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
        if any(isinstance(c, dict) and (c.get("system"), c.get("code")) in wanted for c in codings or []):
            found.append(order)
    return found


def resources_of(value: Any, resource_type: str | None = None) -> list[dict[str, Any]]:
    """The resources a prefetch value holds: itself, or a Bundle's entries (OperationOutcomes,
    which a client may send for a failed prefetch, are not data)."""
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        found = [e.get("resource") for e in value.get("entry") or [] if isinstance(e, dict)]
    else:
        found = [value]
    return [r for r in found if isinstance(r, dict) and r.get("resourceType") not in (None, "OperationOutcome")
            and (resource_type is None or r["resourceType"] == resource_type)]


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


@dataclass
class HookContext:
    """What a call needs from the service around it."""

    public_url: str
    client: Client  # who calls: where its FHIR server may be
    # (payload, key id, provenance) -> (evaluation id, result), stored; runs in a worker thread
    evaluate_and_store: Callable[..., Any]
    # (resources, service date) -> the case they document (service.fhir.intake.FhirCase)
    map_case: Callable[[list[dict[str, Any]], datetime.date], FhirCase]
    run_sync: Callable[..., Any]  # awaits a blocking call in a worker thread


async def answer(request: HookRequest, service: Service, key_id: str, hc: HookContext) -> Answer:
    started = time.monotonic()
    if request.hook != service.hook:
        raise HookError.one(400, f"Service {service.id} answers the {service.hook} hook, not {request.hook!r}.", "hook")
    configuration = (request.extension or {}).get("davinci-crd.configuration") or {}
    if isinstance(configuration, dict) and configuration.get("coverage-info") is False:
        return Answer(200, dict(NO_ANSWER))
    orders = matching_orders(request, service)
    if not orders:
        return Answer(200, dict(NO_ANSWER))

    prefetch = {k: v for k, v in (request.prefetch or {}).items()
                if not (isinstance(v, dict) and v.get("resourceType") == "OperationOutcome")}
    failure: EhrUnavailable | None = None
    missing = {key: fill(template, request.context.patientId)
               for key, template in service.prefetch.items() if key not in prefetch}
    if missing and request.fhirServer and request.fhirAuthorization:
        if not hc.client.may_read(request.fhirServer):
            raise HookError.one(400, "fhirServer is not a FHIR server registered for this client.", "fhirServer")
        try:
            prefetch.update(await read_missing(
                request.fhirServer, request.fhirAuthorization.access_token, missing,
                started + BUDGET_SECONDS - ANSWER_RESERVE_SECONDS,
            ))
        except EhrUnavailable as error:
            failure = error

    coverages = resources_of(prefetch.get("coverage"), "Coverage")
    if failure is not None and len(coverages) != 1:
        raise HookError.one(failure.status, f"Cannot read the patient's Coverage: {failure}", "fhirServer", "transient")
    if len(coverages) != 1:
        raise HookError.one(
            400,
            f"Exactly one Coverage is needed (prefetch 'coverage' or the FHIR server); found {len(coverages)}.",
            "prefetch.coverage", "required" if not coverages else "business-rule",
        )
    coverage_reference = _reference(coverages[0], prefetch.get("coverage"))
    today = datetime.datetime.now(datetime.UTC).date()

    if failure is not None:
        if requested_version(request) < (2, 2):
            raise HookError.one(failure.status, str(failure), "fhirServer", "transient")
        information = ci.technical_information(coverage_reference, str(failure), str(uuid.uuid4()), today)
        actions = [ci.update_action(order, information) for order in orders]
        return Answer(200, {"cards": [], "systemActions": actions})

    if any(p.get("id") != request.context.patientId for p in resources_of(prefetch.get("patient"), "Patient")):
        raise HookError.one(400, "The Patient is not the one context.patientId names.", "prefetch.patient",
                            "business-rule")
    clinical = [r for key in CLINICAL_KEYS for r in resources_of(prefetch.get(key))]
    cases = []  # every order's case is read before any is stored: a bad resource stores nothing
    for order in orders:
        day = service_date(order, today)
        try:
            read = await hc.run_sync(hc.map_case, [*clinical, order, coverages[0]], day)
        except OperationOutcomeError as error:
            raise HookError(400, error.issues) from None
        cases.append((order, day, read))
    actions = []
    for order, day, read in cases:
        payload = {**read.payload, "external_id": request.hookInstance, "policy": service.policy_id,
                   "service_date": day.isoformat()}
        try:
            evaluation_id, result = await hc.run_sync(hc.evaluate_and_store, payload, key_id, read.provenance)
        except InvalidInput as error:
            if any(e["type"] == "no_policy_in_force" for e in error.errors):
                continue
            raise HookError(400, [
                Issue("invalid", f"{e['field']}: {e['message']}",
                      "hookInstance" if e["field"] == "external_id" else read.expressions.get(e["field"]))
                for e in error.errors
            ]) from None
        information = ci.criteria_information(
            result, coverage_reference,
            ask_for_documentation=request.hook == "order-sign",
            questionnaire_url=f"{hc.public_url}/v1/evaluations/{evaluation_id}/questionnaire",
            today=today,
        )
        actions.append(ci.update_action(order, information))
    body: dict[str, Any] = {"cards": []}
    if actions:
        body["systemActions"] = actions
    return Answer(200, body)


def _reference(coverage: dict[str, Any], prefetched: Any) -> str:
    if coverage.get("id"):
        return f"Coverage/{coverage['id']}"
    for entry in (prefetched or {}).get("entry") or []:
        if isinstance(entry, dict) and entry.get("resource") is coverage and entry.get("fullUrl"):
            return entry["fullUrl"]
    raise HookError.one(400, "The Coverage has neither an id nor a fullUrl to refer to it by.", "prefetch.coverage")
