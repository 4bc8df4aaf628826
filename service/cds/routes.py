"""CDS Hooks endpoints: discovery, the hooks, feedback (docs/cds-hooks.md)."""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.cds import discovery, hooks
from service.cds.auth import ClientRegistry, Unauthorized, expiry
from service.cds.store import client_key, remember_token_id, save_feedback
from service.evaluations.submit import evaluate_and_store
from service.errors import InvalidInput, field_path
from service.json_input import parse_json
from service.fhir.intake import FhirCase, case_from_resources
from service.fhir.outcome import FHIR_JSON, Issue, operation_outcome
from service.settings import Settings

logger = logging.getLogger("service.cds")
router = APIRouter(prefix="/cds-services", tags=["cds-hooks"])


@dataclass
class CdsConfig:
    clients: ClientRegistry
    public_url: str | None
    services: dict[str, discovery.Service] | None = None  # from the catalogue, on first use

    @classmethod
    def from_settings(cls, settings: Settings) -> CdsConfig:
        return cls(ClientRegistry.from_file(settings.cds_clients_file), settings.public_url)


def _config(request: Request) -> CdsConfig:
    return request.app.state.cds


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="CdsHooksJWT",
    bearerFormat="JWT",
    description="CDS Hooks 2.0 client JWT (RS384 or ES384) from a client listed in COVERAGE_CRITERIA_CDS_CLIENTS; "
    "aud is the URL of the endpoint called (docs/cds-hooks.md).",
)


async def cds_client(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> str:
    """The api_keys id of the CDS client whose JWT this call carries; 401 otherwise."""
    config = _config(request)
    token = credentials.credentials if credentials else ""
    try:
        if not token.strip():
            raise Unauthorized("A JWT is required: Authorization: Bearer <JWT>.")
        if config.public_url is None:
            raise Unauthorized("CDS Hooks is not set up on this service (COVERAGE_CRITERIA_PUBLIC_URL).")
        claims = config.clients.verify(token.strip(), audience=config.public_url + _service_path(request))
        database = request.app.state.database
        if not await run_in_threadpool(remember_token_id, database, claims["iss"], claims["jti"], expiry(claims)):
            raise Unauthorized("This token (its jti) has been used before.")
        key_id = await run_in_threadpool(client_key, database, claims["iss"])
        if key_id is None:
            raise Unauthorized("This client's key has been revoked.")
    except Unauthorized as refusal:
        raise HTTPException(401, detail=str(refusal), headers={"WWW-Authenticate": "Bearer"}) from None
    request.state.key_id = key_id
    request.state.cds_client = config.clients.clients[claims["iss"]]
    return key_id


CdsClient = Annotated[str, Depends(cds_client)]


def _service_path(request: Request) -> str:
    """The path called, below the service's root (a proxy's prefix is in the public URL already)."""
    path, root = request.url.path, request.scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _services(request: Request) -> dict[str, discovery.Service]:
    config = _config(request)
    if config.services is None:
        config.services = discovery.services(request.app.state.evaluator.catalog)
    return config.services


def _service(request: Request, service_id: str) -> discovery.Service:
    found = _services(request).get(service_id)
    if found is None:
        raise HTTPException(404, detail="No CDS service with this id.")
    return found


@router.get("", summary="CDS Hooks discovery: the services, their prefetch templates and CRD options")
async def discover(request: Request) -> dict[str, Any]:
    return {"services": [service.describe() for service in _services(request).values()]}


@router.post(
    "/{service_id}",
    summary="A CDS Hooks call (order-sign, order-select); answers with Da Vinci CRD coverage information",
)
async def call_service(service_id: str, request: Request, key_id: CdsClient) -> JSONResponse:
    service = _service(request, service_id)
    try:
        parsed = hooks.parse_request(await _read_body(request))
        answer = await hooks.answer(parsed, service, key_id, _hook_context(request))
    except hooks.HookError as error:
        return _outcome(error.status, error.outcome)
    return JSONResponse(answer.body, status_code=answer.status, headers={"Cache-Control": "no-store"})


async def _read_body(request: Request) -> Any:
    """The body by the service's one JSON reader (repeated keys, deep nesting, bad encodings refused)."""
    try:
        return parse_json(await request.body())
    except InvalidInput as error:
        problem = error.errors[0]
        where = None if problem["field"] == "body" else problem["field"]
        raise hooks.HookError.one(400, problem["message"], where, "structure") from None


def _outcome(status: int, outcome: dict[str, Any]) -> JSONResponse:
    return JSONResponse(outcome, status_code=status, media_type=FHIR_JSON, headers={"Cache-Control": "no-store"})


def _hook_context(request: Request) -> hooks.HookContext:
    app = request.app
    evaluator, database = app.state.evaluator, app.state.database

    def store(payload: dict[str, Any], key_id: str, provenance: Any) -> tuple[str, dict[str, Any]]:
        evaluation_id, result_json = evaluate_and_store(evaluator, database, payload, key_id, provenance=provenance)
        return evaluation_id, json.loads(result_json)

    def map_case(resources: list[dict[str, Any]], day: datetime.date) -> FhirCase:
        return case_from_resources(resources, evaluator.dictionary, service_date=day)

    return hooks.HookContext(
        public_url=_config(request).public_url or "",
        client=request.state.cds_client,
        evaluate_and_store=store,
        map_case=map_case,
        run_sync=run_in_threadpool,
    )


class _Feedback(BaseModel):
    model_config = ConfigDict(extra="allow")
    card: str = Field(min_length=1, max_length=200)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[dict[str, Any]] | None = None
    overrideReason: dict[str, Any] | None = None
    outcomeTimestamp: str = Field(min_length=1, max_length=64)


class _FeedbackBody(BaseModel):
    feedback: list[_Feedback] = Field(min_length=1, max_length=100)


@router.post("/{service_id}/feedback", summary="CDS Hooks feedback on this service's cards, stored")
async def feedback(service_id: str, request: Request, key_id: CdsClient) -> JSONResponse:
    service = _service(request, service_id)
    try:
        parsed = _FeedbackBody.model_validate(await _read_body(request))
    except hooks.HookError as error:
        return _outcome(error.status, error.outcome)
    except ValidationError as error:
        return _outcome(400, operation_outcome(
            Issue("structure", e["msg"], field_path(e["loc"]))
            for e in error.errors(include_url=False, include_input=False)))
    items = [item.model_dump(exclude_none=True) for item in parsed.feedback]
    await run_in_threadpool(save_feedback, request.app.state.database, service.id, key_id, items)
    return JSONResponse({}, status_code=200)
