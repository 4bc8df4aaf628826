"""One CDS Hooks call (``order-sign`` or ``order-select``), from request to answer.

Find the draft orders the service's policy answers for; no such order, no answer (``{"cards":
[], "systemActions": []}``). Otherwise gather the patient's Coverage and clinical resources from
prefetch, read what prefetch lacks from the EHR's FHIR server, map them to a case, evaluate and
store it (its ``external_id`` is the ``hookInstance``) and answer with a coverage-information
update of each order. The whole call keeps CDS Hooks' 5-second budget: the EHR is read until one
second before it ends, and no order is begun in its last moments. What a limit left out (orders
over :data:`~service.cds.request.MAX_ORDERS`, resources over the caps, orders left for want of
time) is said in the answer. Errors a client can fix are 4xx with an OperationOutcome.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from service.cds import coverage_information as ci
from service.cds.auth import Client
from service.cds.discovery import Service
from service.cds.ehr_client import MAX_ENTRIES, EhrUnavailable, fill, read_missing
from service.cds.request import (MAX_ORDERS, HookError, HookRequest, answer_version, check_one_patient,
                                 coverage_info_wanted, matching_orders, resources_of, service_date)
from service.errors import InvalidInput
from service.fhir.intake import FhirCase
from service.fhir.outcome import Issue, OperationOutcomeError
from service.store.idempotency import IdempotencyClaim

BUDGET_SECONDS = 5.0
# Time kept back from the budget for mapping, evaluating, storing and answering.
ANSWER_RESERVE_SECONDS = 1.0
# No order's evaluation is begun later than this before the budget ends.
FINISH_MARGIN_SECONDS = 0.3
CLINICAL_KEYS = ("patient", "observations", "conditions", "procedures", "questionnaireResponses")
SOURCE_LABEL = "Coverage criteria check (criteria only, not a coverage decision)"


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


@dataclass
class HookContext:
    """What a call needs from the service around it (blocking callables run by ``run_sync``)."""

    public_url: str
    client: Client  # who calls: where its FHIR server may be
    key_id: str  # its api_keys id, under which evaluations are stored
    started: float  # time.monotonic() when the call arrived: the budget counts from here
    # (payload, provenance) -> result, not stored
    evaluate: Callable[..., dict[str, Any]]
    # (payload, provenance, claim) -> result, stored under the claim; None when another call stored first
    evaluate_and_store: Callable[..., dict[str, Any] | None]
    # claim -> the result stored under it earlier, if any
    previous: Callable[[IdempotencyClaim], dict[str, Any] | None]
    # (resources, service date) -> the case they document (service.fhir.intake.FhirCase)
    map_case: Callable[[list[dict[str, Any]], datetime.date], FhirCase]
    run_sync: Callable[..., Awaitable[Any]]


async def answer(request: HookRequest, service: Service, hc: HookContext) -> Answer:
    if request.hook != service.hook:
        raise HookError.one(400, f"Service {service.id} answers the {service.hook} hook, not {request.hook!r}.", "hook")
    version = answer_version(request)
    body: dict[str, Any] = {"cards": [], "systemActions": []}  # systemActions always: the Inferno kit requires it
    if not coverage_info_wanted(request):
        return Answer(200, body)
    orders = matching_orders(request, service)
    if not orders:
        return Answer(200, body)
    patient_id = request.context.patientId
    orders, unchecked = orders[:MAX_ORDERS], orders[MAX_ORDERS:]
    check_one_patient(orders, patient_id, "context.draftOrders")

    prefetch = {k: v for k, v in (request.prefetch or {}).items()
                if not (isinstance(v, dict) and v.get("resourceType") == "OperationOutcome")}
    to_read = {key: fill(template, patient_id) for key, template in service.prefetch.items() if key not in prefetch}
    not_read, failure = await _read(request, hc, to_read, prefetch)
    if failure is not None and "coverage" in to_read:
        raise HookError.one(failure.status, f"Cannot read the patient's Coverage: {failure}", "fhirServer", "transient")
    coverages = resources_of(prefetch.get("coverage"), "Coverage")
    planned = [(order, ref) for order in orders if (ref := _coverage_for(order, coverages, prefetch.get("coverage")))]
    if not planned:  # no Coverage: missing business data, not an HTTP error (CRD 2.2 found-32)
        return Answer(200, body)
    today = datetime.datetime.now(datetime.UTC).date()

    if failure is not None:
        if version < (2, 2):
            raise HookError.one(failure.status, str(failure), "fhirServer", "transient")
        body["systemActions"] = [ci.update_action(order, ci.technical_information(ref, str(failure),
                                                                                  str(uuid.uuid4()), today))
                                 for order, ref in planned]
        return Answer(200, body)

    for patient in resources_of(prefetch.get("patient"), "Patient"):
        if patient.get("id") != patient_id:
            raise HookError.one(400, "The Patient is not the one context.patientId names.", "prefetch.patient",
                                "business-rule")
    clinical = []
    for key in CLINICAL_KEYS:
        found = resources_of(prefetch.get(key))
        if len(found) > MAX_ENTRIES:
            not_read.append(f"{key}: resources after the first {MAX_ENTRIES:,} ({len(found) - MAX_ENTRIES:,} more)")
        clinical += found[:MAX_ENTRIES]
    check_one_patient(clinical, patient_id)

    cases: dict[datetime.date, FhirCase] = {}  # every case is read before any is stored: a bad resource stores nothing
    for order, _ in planned:
        day = service_date(order, today)
        if day not in cases:
            try:
                cases[day] = await hc.run_sync(hc.map_case, clinical, day)
            except OperationOutcomeError as error:
                raise HookError(400, error.issues) from None
    for order, reference in planned:
        if time.monotonic() > hc.started + BUDGET_SECONDS - FINISH_MARGIN_SECONDS:
            unchecked.append(order)
            continue
        day = service_date(order, today)
        action = await _order_answer(request, service, hc, order, reference, cases[day], day, version, not_read)
        if action is not None:
            body["systemActions"].append(action)
    if unchecked:
        body["cards"].append(_unchecked_card(unchecked))
    return Answer(200, body)


async def _read(request: HookRequest, hc: HookContext, to_read: dict[str, str],
                prefetch: dict[str, Any]) -> tuple[list[str], EhrUnavailable | None]:
    """Read what prefetch lacks into ``prefetch``: what the limits left unread, and the failure
    if the EHR could not be read. Without a way to read, a missing Coverage is a 412."""
    if not to_read:
        return [], None
    if not (request.fhirServer and request.fhirAuthorization):
        if "coverage" in to_read:
            raise HookError.one(412, "The patient's Coverage was not prefetched, and the call gives no fhirServer "
                                "with a fhirAuthorization to read it (CDS Hooks: 412).", "prefetch.coverage", "required")
        return [], None
    if not hc.client.may_read(request.fhirServer):
        raise HookError.one(400, "fhirServer is not under a FHIR server registered for this client.", "fhirServer")
    try:
        reading = await read_missing(
            request.fhirServer, request.fhirAuthorization.access_token, to_read,
            hc.started + BUDGET_SECONDS - ANSWER_RESERVE_SECONDS, hc.client.fhir_servers,
        )
    except EhrUnavailable as error:
        return [], error
    prefetch.update(reading.answers)
    return reading.not_read, None


async def _order_answer(request: HookRequest, service: Service, hc: HookContext, order: dict[str, Any],
                        reference: str, case: FhirCase, day: datetime.date, version: tuple[int, ...],
                        not_read: list[str]) -> dict[str, Any] | None:
    """The update for one order, or None when there is nothing new to say (the order already
    carries the same coverage information, or no version of the policy is in force on its date).
    A call repeating a ``hookInstance`` with the same order gets the evaluation made the first
    time: one evaluation per hookInstance and order."""
    payload = {**case.payload, "external_id": request.hookInstance, "policy": service.policy_id,
               "service_date": day.isoformat()}
    digest = hashlib.sha256(json.dumps([service.id, request.hookInstance, order], sort_keys=True,
                                       separators=(",", ":")).encode()).hexdigest()
    claim = IdempotencyClaim(hc.key_id, f"cds-hook:{digest}", digest)
    earlier = ci.carried(order, reference)

    def information(result: dict[str, Any]) -> dict[str, Any]:
        return ci.criteria_information(
            result, reference, ask_for_documentation=request.hook == "order-sign",
            questionnaire_url=f"{hc.public_url}/v1/evaluations/{result['evaluation_id']}/questionnaire",
            version=version, not_read=not_read,
        )

    try:
        result = await hc.run_sync(hc.previous, claim)
        if result is None and earlier is not None:
            # Signed again with its coverage information on: evaluate first, store only if it changed.
            if ci.same_news(earlier, information(await hc.run_sync(hc.evaluate, payload, case.provenance))):
                return None
        if result is None:
            result = (await hc.run_sync(hc.evaluate_and_store, payload, case.provenance, claim)
                      or await hc.run_sync(hc.previous, claim))  # None: a repeat of this call stored first
    except InvalidInput as error:
        if any(e["type"] == "no_policy_in_force" for e in error.errors):
            return None
        raise HookError(400, [
            Issue("invalid", f"{e['field']}: {e['message']}",
                  "hookInstance" if e["field"] == "external_id" else case.expressions.get(e["field"]))
            for e in error.errors
        ]) from None
    fresh = information(result)
    return None if ci.same_news(earlier, fresh) else ci.update_action(order, fresh)


def _coverage_for(order: dict[str, Any], coverages: list[dict[str, Any]], prefetched: Any) -> str | None:
    """The reference of the Coverage the order's information is about: the patient's one
    Coverage, or among several the one the order's ``insurance`` names; None without any."""
    if not coverages:
        return None
    references = [_reference(c, prefetched) for c in coverages]
    if len(coverages) == 1:
        return references[0]
    insurance = order.get("insurance") if isinstance(order.get("insurance"), list) else []
    named = {i.get("reference") for i in insurance if isinstance(i, dict) and isinstance(i.get("reference"), str)}
    chosen = [ref for ref in references if ref in named or any(n.endswith("/" + ref) for n in named)]
    if len(chosen) == 1:
        return chosen[0]
    raise HookError.one(400, f"The patient has {len(coverages)} Coverages and the order's insurance does not name "
                        "one of them: send the one Coverage relevant to the order (CRD).", "prefetch.coverage",
                        "business-rule")


def _reference(coverage: dict[str, Any], prefetched: Any) -> str:
    if isinstance(coverage.get("id"), str) and coverage["id"]:
        return f"Coverage/{coverage['id']}"
    entries = prefetched.get("entry") if isinstance(prefetched, dict) and isinstance(prefetched.get("entry"), list) else []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("resource") is coverage and isinstance(entry.get("fullUrl"), str):
            return entry["fullUrl"]
    raise HookError.one(400, "The Coverage has neither an id nor a fullUrl to refer to it by.", "prefetch.coverage")


def _unchecked_card(orders: list[dict[str, Any]]) -> dict[str, Any]:
    """A card naming the orders of the policy that were not checked: over the number one call
    checks, or left when the time CDS Hooks allows ran out. They get no coverage information."""
    names = [f"{o['resourceType']}/{o.get('id')}" for o in orders]
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return {
        "uuid": str(uuid.uuid4()),
        "summary": f"{len(orders)} order{'s' if len(orders) > 1 else ''} of this policy not checked: over this "
                   "service's limits for one call",
        "detail": f"One call checks at most {MAX_ORDERS} orders, within CDS Hooks' {BUDGET_SECONDS:g} seconds. "
                  f"Not checked, and given no coverage information: {shown}. Send them in another call.",
        "indicator": "info",
        "source": {"label": SOURCE_LABEL,
                   "topic": {"system": ci.CRD_TEMP, "code": "instructions", "display": "Instructions"}},
    }
