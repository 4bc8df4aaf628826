"""CDS Hooks endpoints: discovery, the hooks, feedback (docs/cds-hooks.md)."""

from __future__ import annotations

import datetime
import json
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.cds import discovery, hooks
from service.cds.auth import ClientRegistry, Unauthorized, expiry
from service.cds.bounded_json import MAX_DEPTH, too_deep
from service.cds.request import HookError, parse_request
from service.cds.store import client_key, client_key_id, remember_token_id, save_feedback
from service.evaluations.submit import evaluate_and_store
from service.web.audit import audited
from service.errors import InvalidInput, field_path
from service.json_input import parse_json
from service.fhir.intake import FhirCase, case_from_resources
from service.fhir.outcome import FHIR_JSON, Issue, operation_outcome
from service.settings import Settings
from service.store.idempotency import IdempotencyClaim
from service.web.ratelimit import Buckets, RateLimiter

logger = logging.getLogger("service.cds")
router = APIRouter(prefix="/cds-services", tags=["cds-hooks"])


# Feedback is a clinician accepting or overriding a card: a client sends few. Stored as sent, so
# both its rate and its size are held low (a flood of large feedback once filled the database).
FEEDBACK_PER_MINUTE = 60
FEEDBACK_MAX_BYTES = 64 * 1024
# Discovery needs no token: limited per client address instead (it is cheap, but not free).
DISCOVERY_PER_MINUTE = 120


@dataclass
class CdsConfig:
    clients: ClientRegistry
    public_url: str | None
    hooks_limiter: RateLimiter | None = None  # per client: the service's per-key limit
    feedback_limiter: RateLimiter | None = None  # per client
    discovery_limiter: RateLimiter | None = None  # per client address
    services: dict[str, discovery.Service] | None = None  # from the catalogue, on first use

    @classmethod
    def from_settings(cls, settings: Settings, shared: Buckets | None = None) -> CdsConfig:
        """``COVERAGE_CRITERIA_RATE_LIMIT_PER_MINUTE`` = 0 turns the CDS limits off too; ``shared``:
        the buckets every server sharing the database counts in (see service.web.ratelimit)."""
        per_minute = settings.rate_limit_per_minute
        return cls(
            ClientRegistry.from_file(settings.cds_clients_file), settings.public_url,
            RateLimiter(per_minute, name="cds-hooks", shared=shared) if per_minute else None,
            RateLimiter(FEEDBACK_PER_MINUTE, name="cds-feedback", shared=shared) if per_minute else None,
            RateLimiter(DISCOVERY_PER_MINUTE, max_buckets=10_000, name="cds-discovery", shared=shared)
            if per_minute else None,
        )


def _config(request: Request) -> CdsConfig:
    return request.app.state.cds


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="CdsHooksJWT",
    bearerFormat="JWT",
    description="CDS Hooks 2.0 client JWT (RS384 or ES384) from a client listed in COVERAGE_CRITERIA_CDS_CLIENTS; "
    "aud is the URL of the endpoint called (docs/cds-hooks.md).",
)


def _limit(limiter: RateLimiter | None, who: str) -> None:
    if limiter is not None and (wait := limiter.retry_after(who)):
        raise HTTPException(429, detail=f"This client is limited to {limiter.per_minute} calls of this kind a "
                            f"minute; retry after {wait} s.", headers={"Retry-After": str(wait)})


async def cds_client(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> str:
    """The api_keys id of the CDS client whose JWT this call carries; 401 otherwise, 429 when the
    client has used up its calls of this kind (checked before its token id is stored)."""
    request.state.started = time.monotonic()
    config = _config(request)
    token = credentials.credentials if credentials else ""
    try:
        if not token.strip():
            raise Unauthorized("A JWT is required: Authorization: Bearer <JWT>.")
        if config.public_url is None:
            raise Unauthorized("CDS Hooks is not set up on this service (COVERAGE_CRITERIA_PUBLIC_URL).")
        claims = config.clients.verify(token.strip(), audience=config.public_url + _service_path(request))
        feedback = request.url.path.endswith("/feedback")
        _limit(config.feedback_limiter if feedback else config.hooks_limiter, client_key_id(claims["iss"]))
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
    request.state.organization = request.state.cds_client.organization  # the submitter (contract "Organizations")
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
    _limit(_config(request).discovery_limiter, request.client.host if request.client else "-")
    return {"services": [service.describe() for service in _services(request).values()]}


@router.post(
    "/{service_id}",
    summary="A CDS Hooks call (order-sign, order-select); answers with Da Vinci CRD coverage information",
    dependencies=[audited("create", "evaluation")],
)
async def call_service(service_id: str, request: Request, key_id: CdsClient) -> JSONResponse:
    service = _service(request, service_id)
    try:
        parsed = parse_request(_read_body(await request.body()))
        answer = await hooks.answer(parsed, service, _hook_context(request, key_id))
    except HookError as error:
        return _outcome(error.status, error.outcome)
    return JSONResponse(answer.body, status_code=answer.status, headers={"Cache-Control": "no-store"})


def _read_body(body: bytes) -> Any:
    """The body by the service's one JSON reader (repeated keys, bad encodings refused), nested
    no deeper than FHIR resources need (service.cds.bounded_json)."""
    try:
        document = parse_json(body)
    except InvalidInput as error:
        problem = error.errors[0]
        where = None if problem["field"] == "body" else problem["field"]
        raise HookError.one(400, problem["message"], where, "structure") from None
    if too_deep(document):
        raise HookError.one(400, f"The body is nested more than {MAX_DEPTH} levels deep.", None, "structure")
    return document


def _outcome(status: int, outcome: dict[str, Any]) -> JSONResponse:
    return JSONResponse(outcome, status_code=status, media_type=FHIR_JSON, headers={"Cache-Control": "no-store"})


def _hook_context(request: Request, key_id: str) -> hooks.HookContext:
    app = request.app
    evaluator, database = app.state.evaluator, app.state.database

    def evaluate(payload: dict[str, Any], provenance: Any) -> dict[str, Any]:
        return evaluator.evaluate(payload, provenance=provenance)

    def store(payload: dict[str, Any], provenance: Any, claim: IdempotencyClaim) -> dict[str, Any] | None:
        # An answer to the ordering clinician, not a prior-authorization request: it opens none.
        stored = evaluate_and_store(evaluator, database, payload, key_id, claim, provenance, opens_request=False,
                                    organization=request.state.organization)
        return json.loads(stored[1]) if stored is not None else None

    def previous(claim: IdempotencyClaim) -> dict[str, Any] | None:
        found = claim.previous(database)
        return json.loads(found.result_json) if found is not None else None

    def map_case(resources: list[dict[str, Any]], day: datetime.date) -> FhirCase:
        return case_from_resources(resources, evaluator.dictionary, service_date=day)

    return hooks.HookContext(
        public_url=_config(request).public_url or "",
        client=request.state.cds_client,
        key_id=key_id,
        started=request.state.started,
        evaluate=evaluate,
        evaluate_and_store=store,
        previous=previous,
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
    body = await request.body()
    if len(body) > FEEDBACK_MAX_BYTES:
        return _outcome(413, operation_outcome([Issue("too-long", f"Feedback is limited to {FEEDBACK_MAX_BYTES // 1024} "
                                                      "KiB a call.")]))
    try:
        parsed = _FeedbackBody.model_validate(_read_body(body))
    except HookError as error:
        return _outcome(error.status, error.outcome)
    except ValidationError as error:
        return _outcome(400, operation_outcome(
            Issue("structure", e["msg"], field_path(e["loc"]))
            for e in error.errors(include_url=False, include_input=False)))
    items = [item.model_dump(exclude_none=True) for item in parsed.feedback]
    await run_in_threadpool(save_feedback, request.app.state.database, service.id, key_id, items)
    return JSONResponse({}, status_code=200)
