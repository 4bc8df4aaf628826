"""``GET|POST /fhir/ValueSet/$expand`` (and ``GET /fhir/ValueSet/{id}/$expand``): the value sets
the questionnaire packages use, expanded (the codes each field is read from, rules/fields.yaml).
``url`` (and ``valueSetVersion``) name one; ``filter`` keeps the codes containing it; unknown: 404."""

from __future__ import annotations

import copy
from typing import Annotated, Any

from fastapi import Query, Request, Response

from service.fhir.dtr.package import library_for
from service.fhir.outcome import OperationOutcomeError
from service.fhir_api.routing import FHIR_ANSWER, FHIR_BODY, fhir_answer, fhir_base, fhir_body, fhir_router
from service.web.dependencies import EvaluatorDep, IntakeKey

router = fhir_router()
_ANSWERS = {200: FHIR_ANSWER, 400: FHIR_ANSWER, 404: FHIR_ANSWER}


def value_sets(evaluator: Any, base: str) -> list[dict[str, Any]]:
    """Every value set of every policy version's package under ``base``."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for version in evaluator.catalog.all_versions():
        for value_set in library_for(evaluator.dictionary, version, base).value_sets:
            found.setdefault((value_set["url"], value_set["version"]), value_set)
    return list(found.values())


def _expand(evaluator: Any, base: str, *, url: str | None = None, version: str | None = None,
            identifier: str | None = None, text: str | None = None) -> dict[str, Any]:
    if url and "|" in url and version is None:
        url, _, version = url.partition("|")
    matches = [v for v in value_sets(evaluator, base)
               if (url is None or v["url"] == url) and (identifier is None or v["id"] == identifier)
               and (version is None or v["version"] == version)]
    if not matches:
        raise OperationOutcomeError.one("not-found", f"No value set of this service is {url or identifier!r}"
                                        + (f" version {version!r}" if version else "") + ".", status=404)
    expanded = copy.deepcopy(matches[-1])
    if text:
        wanted = text.lower()
        contains = [c for c in expanded["expansion"]["contains"] if wanted in c["code"].lower()
                    or wanted in c.get("display", "").lower()]
        expanded["expansion"] = {**expanded["expansion"], "total": len(contains),
                                 "parameter": [{"name": "filter", "valueString": text}]}
        if contains:
            expanded["expansion"]["contains"] = contains
        else:
            expanded["expansion"].pop("contains")
    return expanded


@router.get("/ValueSet/$expand", responses=_ANSWERS, summary="A value set of the questionnaire packages, expanded")
def expand_by_url(request: Request, _key: IntakeKey, evaluator: EvaluatorDep,
                  url: Annotated[str, Query(min_length=1, max_length=2000)],
                  valueSetVersion: Annotated[str | None, Query(max_length=200)] = None,
                  filter: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    return fhir_answer(_expand(evaluator, fhir_base(request), url=url, version=valueSetVersion, text=filter))


@router.get("/ValueSet/{value_set_id}/$expand", responses=_ANSWERS, summary="A value set by id, expanded")
def expand_by_id(value_set_id: str, request: Request, _key: IntakeKey, evaluator: EvaluatorDep,
                 filter: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    return fhir_answer(_expand(evaluator, fhir_base(request), identifier=value_set_id, text=filter))


@router.post("/ValueSet/$expand", responses=_ANSWERS, openapi_extra=FHIR_BODY,
             summary="A value set of the questionnaire packages, expanded (Parameters: url, valueSetVersion, filter)")
async def expand_by_parameters(request: Request, _key: IntakeKey, evaluator: EvaluatorDep) -> Response:
    body = await fhir_body(request)
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters" or not isinstance(body.get("parameter"), list):
        raise OperationOutcomeError.one("structure", "The body must be a Parameters resource.", "Parameters", status=400)
    given: dict[str, Any] = {}
    for entry in body["parameter"]:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            given[entry["name"]] = next((entry[k] for k in ("valueUri", "valueCanonical", "valueString", "resource")
                                         if k in entry), None)
    if isinstance(given.get("valueSet"), dict):  # a value set sent whole: expand ours of the same url
        given.setdefault("url", given["valueSet"].get("url"))
    if not isinstance(given.get("url"), str):
        raise OperationOutcomeError.one("required", "url (the value set's canonical) is needed.", "Parameters.parameter",
                                        status=400)
    return fhir_answer(_expand(evaluator, fhir_base(request), url=given["url"], version=given.get("valueSetVersion"),
                                 text=given.get("filter") if isinstance(given.get("filter"), str) else None))
