"""``POST [base]/Questionnaire/$questionnaire-package`` (and ``[base]/$questionnaire-package``):
Da Vinci DTR's questionnaire package (docs/dtr.md).

With ``context`` (an evaluation id: CRD's coverage-assertion-id, or PAS's request for
information) the package holds that evaluation's questionnaire, asking only what it is missing;
otherwise the questionnaire of each policy whose ``orders:`` code an order carries, or that a
``questionnaire`` canonical names. Unknown coverage, order or context: 4xx OperationOutcome.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool

from service.fhir.dtr.package import (
    PackageRequest,
    evaluation_questionnaire_url,
    package_for_evaluation,
    package_for_policy,
    parameters,
    policy_questionnaire_url,
    read_request,
)
from service.fhir.outcome import Issue, OperationOutcomeError, operation_outcome
from service.fhir.questionnaire import missing_fields
from service.fhir_api.routing import FHIR_ANSWER, FHIR_BODY, fhir_answer, fhir_body, fhir_router, service_root
from service.store.evaluations import get_evaluation_result
from service.web.audit import audit_of, audited
from service.web.dependencies import DatabaseDep, EvaluatorDep, IntakeKey

router = fhir_router()
_AUDITED = [audited("read", "questionnaire")]  # the evaluation named by context: resource_id, once read
_DOC = dict(summary="DTR $questionnaire-package: the questionnaire, its CQL library and value sets",
            openapi_extra=FHIR_BODY, responses={200: FHIR_ANSWER, 400: FHIR_ANSWER, 404: FHIR_ANSWER, 422: FHIR_ANSWER},
            dependencies=_AUDITED)


@router.post("/Questionnaire/$questionnaire-package", **_DOC)
@router.post("/Questionnaire/$questionnaire-package/", include_in_schema=False,  # as the Inferno DTR kit calls it
             dependencies=_AUDITED)
@router.post("/$questionnaire-package", **_DOC)
async def questionnaire_package(request: Request, key: IntakeKey, db: DatabaseDep, evaluator: EvaluatorDep) -> Response:
    ask = read_request(await fhir_body(request))
    root = service_root(request)
    context = ask.context or _context_of(ask.questionnaires, root)
    if context is not None:
        audit_of(request).resource_id = context
        stored = await run_in_threadpool(get_evaluation_result, db, key, context)
        if stored is None:
            raise OperationOutcomeError.one("not-found", "The context names no evaluation this service holds "
                                            "(expected a CRD coverage-assertion-id or an evaluation id).",
                                            "Parameters.parameter.where(name='context').value", status=404)
        result = json.loads(stored)
        version = _version(evaluator, result["policy"]["id"], result["policy"]["version"])
        bundles = [package_for_evaluation(evaluator.dictionary, version, result, ask, root=root)]
        if not missing_fields(result):  # DTR oper-8: say so rather than hand over an empty form silently
            text = (f"Evaluation {context} is missing no information: its questionnaire asks nothing, and no "
                    "documentation is needed for these criteria (a reviewer still decides).")
            return fhir_answer(parameters(bundles, ask, operation_outcome([Issue("informational", text,
                                                                                 severity="information")])))
    else:
        bundles = [package_for_policy(evaluator.dictionary, version, ask, root=root)
                   for version in _policies(evaluator, ask, root)]
    return fhir_answer(parameters(bundles, ask))


def _context_of(canonicals: list[str], root: str) -> str | None:
    """An evaluation whose questionnaire a ``questionnaire`` canonical names."""
    prefix, suffix = evaluation_questionnaire_url(root, "\0").split("\0")
    for canonical in canonicals:
        url = canonical.partition("|")[0]
        if url.startswith(prefix) and url.endswith(suffix) and len(url) > len(prefix) + len(suffix):
            return url[len(prefix):-len(suffix)]
    return None


def _version(evaluator: Any, policy_id: str, version: str) -> Any:
    for candidate in evaluator.catalog.versions.get(policy_id, []):
        if candidate.version == version:
            return candidate
    raise OperationOutcomeError.one("not-found", f"The evaluation's policy version {policy_id} {version} is no longer "
                                    "served, so its questionnaire cannot be built.", status=404)


def _policies(evaluator: Any, ask: PackageRequest, root: str) -> list[Any]:
    """The policy versions in force today for the orders' codes and the questionnaires named."""
    catalog, today = evaluator.catalog, datetime.date.today()
    chosen: dict[str, Any] = {}
    issues = []
    for index, canonical in enumerate(ask.questionnaires):
        url, _, wanted = canonical.partition("|")
        found = next((v for pid, versions in catalog.versions.items() for v in versions
                      if policy_questionnaire_url(root, pid) == url and (not wanted or v.version == wanted)), None)
        if found is None:
            issues.append(Issue("not-found", f"No questionnaire of this service is {canonical!r}.",
                                f"Parameters.parameter.where(name='questionnaire')[{index}].value"))
        else:
            chosen.setdefault(found.id, found)
    codes = ask.order_codes()
    if ask.orders:
        matched = [pid for pid, versions in catalog.versions.items()
                   if any((o.system, o.code) in codes for v in versions for o in v.orders)]
        if not matched and not chosen:
            shown = ", ".join(sorted(f"{s}|{c}" for s, c in codes)) or "no code"
            issues.append(Issue("not-found", f"No policy of this service answers for the orders given ({shown}); "
                                "no documentation is asked for them here.", "Parameters.parameter.where(name='order')"))
        for pid in matched:
            chosen.setdefault(pid, catalog.in_force(pid, today) or catalog.versions[pid][-1])
    if issues:
        raise OperationOutcomeError(issues, status=404 if all(i.code == "not-found" for i in issues) else 400)
    return list(chosen.values())
