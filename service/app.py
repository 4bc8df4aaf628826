"""The composition root: ``create_app`` mounts every face (REST JSON, CDS Hooks, the review page)
and renders their errors; ``serve`` runs it under uvicorn. Nothing imports this but the CLI."""

from __future__ import annotations

import copy
import gc
import logging
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.requests import ClientDisconnect
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.supervisors import Multiprocess

from service.errors import InvalidInput, RefusedRequest
from service.engine.evaluation import Evaluator
from service.fhir.outcome import FHIR_JSON, OperationOutcomeError
from service.store.keys import roles_granting
from service.web.audit import AuditMiddleware
from service.web.middleware import (
    QUIET_LOGGERS,
    AccessLogMiddleware,
    BodySizeLimitMiddleware,
    NoStoreMiddleware,
    make_logs_safe,
)
from service.web.docs import DocsPolicyMiddleware, add_redoc
from service.web.media import media_type
from service.web.ratelimit import RateLimiter
from service.api.lean_post import LeanEvaluationPost
from service.api.routers import audit, determinations, evaluations, health, policies, requests
from service.cds import routes as cds
from service.fhir_api import router as fhir_api
from service.review import notes as review_notes, pages as review_pages
from service.requests.grouping import DueClock
from service.settings import Settings
from service.store.database import Database
from service.store.ratelimits import shared_buckets

logger = logging.getLogger("service")
DATABASE_RETRY_AFTER_SECONDS = 5
# nginx's status for "client closed the request": what the access log shows for a client that
# went away before it had sent its whole body (nobody receives the response).
CLIENT_CLOSED_REQUEST = 499

DESCRIPTION = """\
Checks prior-authorization cases against declarative, cited coverage criteria.
Results support a reviewer's determination; they are not a coverage decision.

Each operation says what it needs. The `/v1` endpoints need an API key in the `X-API-Key`
header, of the role the operation names (`x-required-role`): `intake` keys may submit
evaluations and read their own organization's, and the policies; `reviewer` keys read every
organization's, may also list evaluations by `external_id` and add notes; `auditor` keys read
the audit trail and the metrics only. A key may make a limited number of requests a minute (429
with `Retry-After` beyond it). CDS Hooks calls and feedback need a CDS Hooks client's signed JWT
(`Authorization: Bearer`); `/health`, `/health/ready` and CDS Hooks discovery need nothing. The
review page (`/review`, not an API) signs reviewers in with a reviewer key and a session cookie.
Every access to case data is recorded in the audit trail. While the database is unreachable or
read-only the service answers 503 and stores nothing.
"""


def create_app(settings: Settings | None = None, evaluator: Evaluator | None = None) -> FastAPI:
    """The service for ``settings`` (default: from the environment); migrations run at start-up."""
    settings = settings or Settings.from_env()
    database = Database(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(database.migrate)
        # What start-up built (~130,000 objects: the app, models, rules) lives as long as the
        # process: out of the collector's way, a full collection no longer walks it (~50-120 ms
        # here, a pause every request in flight would wait out).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            database.dispose()

    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from files the fastapi-offline
    # package ships, never from a CDN, so the docs work offline and behind strict proxies; and
    # Swagger UI does not send the schema to its public validator.
    # /redoc is served by service.web.docs: ReDoc's bundle would load Redocly's logo from its CDN.
    app = FastAPIOffline(title="Coverage criteria", version="1", description=DESCRIPTION, lifespan=lifespan,
                         swagger_ui_parameters={"validatorUrl": None}, redoc_url=None)
    add_redoc(app)
    # /health/ is not /health: a JSON 404 rather than a bare 307 to the other spelling.
    app.router.redirect_slashes = False
    app.state.database = database
    app.state.evaluator = evaluator or Evaluator.from_rules_dir(settings.rules_dir)
    app.state.due_clock = DueClock.from_settings(settings)
    per_minute = settings.rate_limit_per_minute
    # Limits every server sharing the database holds between them (PostgreSQL); None: in the process.
    app.state.shared_buckets = shared_buckets(database)
    app.state.rate_limiter = (RateLimiter(per_minute, name="api-key", shared=app.state.shared_buckets)
                              if per_minute else None)
    app.include_router(health.router)
    app.include_router(evaluations.router, prefix="/v1")
    app.include_router(policies.router, prefix="/v1")
    app.include_router(requests.router, prefix="/v1")
    app.include_router(determinations.router, prefix="/v1")
    app.include_router(audit.router, prefix="/v1")
    app.state.cds = cds.CdsConfig.from_settings(settings, app.state.shared_buckets)
    app.include_router(cds.router)
    app.include_router(review_notes.router, prefix="/v1")
    app.include_router(review_pages.router)
    app.state.public_url = settings.public_url
    app.include_router(fhir_api)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(OperationOutcomeError, _operation_outcome)
    app.add_exception_handler(RefusedRequest, _refused)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(ClientDisconnect, _client_disconnected)
    for unavailable in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(unavailable, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(LeanEvaluationPost)  # the innermost, inside the audit's: see service/api/lean_post.py
    app.add_middleware(AuditMiddleware)  # its own 503 still gets no-store and a log line
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(NoStoreMiddleware)
    app.add_middleware(DocsPolicyMiddleware)
    app.add_middleware(AccessLogMiddleware)
    if settings.trusted_proxies:
        # uvicorn's own, run by the app rather than by uvicorn, whose default believes any loopback
        # peer's X-Forwarded-For (issue 16: the sign-in limit was dodged by rotating it).
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
    make_logs_safe()
    _complete_openapi(app)
    return app


def serve(host: str, port: int, workers: int = 1) -> None:
    """Run the service from environment settings until interrupted, in ``workers`` processes.

    The rules are loaded and the schema migrated before uvicorn starts, so a broken rule file or
    an unreachable database stops the command at once, saying why.
    """
    app = create_app()
    try:
        app.state.database.migrate()
    except (OperationalError, InterfaceError) as error:
        raise SystemExit(f"cannot use the database: {error.orig}") from None
    print(f"database: {app.state.database}", file=sys.stderr)
    if workers == 1:
        uvicorn.run(app, host=host, port=port, **uvicorn_options())
        return
    app.state.database.dispose()
    # Each worker process builds its own app, and so its own engine and engine lock.
    config = uvicorn.Config(
        "service.app:create_app", factory=True, workers=workers, host=host, port=port, **uvicorn_options()
    )
    Multiprocess(config, sockets=[tcp_listener(config)]).run()


def tcp_listener(config: uvicorn.Config) -> socket.socket:
    """The listening socket for worker processes, as uvicorn.run would bind it but for one thing:
    uvicorn leaves its protocol at 0, so asyncio leaves Nagle's algorithm on for accepted
    connections and every keep-alive response waits ~40 ms for a delayed ACK (uvicorn issue
    #3149). Rebuilt from its file descriptor, the socket reports IPPROTO_TCP and asyncio sets
    TCP_NODELAY on each connection."""
    return socket.socket(fileno=config.bind_socket().detach())


def uvicorn_options() -> dict[str, Any]:
    """How ``serve`` runs uvicorn: no uvicorn access log, since it would print query strings
    (``external_id``); the service's own access log (service.web.middleware) takes its place.
    No proxy headers: uvicorn would believe ``X-Forwarded-For`` from 127.0.0.1 (or
    $FORWARDED_ALLOW_IPS); the app believes them only from COVERAGE_CRITERIA_TRUSTED_PROXIES.
    uvloop runs the event loop where installed (uvicorn's standard extras; about a third less CPU per request
    outside our code); the HTTP parser stays h11, since httptools answers 400 by itself, with no
    access line, to a header holding a control character, where the service names the field in
    a 422 (tests/test_hardening.py's hostile probe)."""
    return {"access_log": False, "log_config": _log_config(), "loop": "auto", "http": "h11", "proxy_headers": False}


def _client_error(request: Request, error: InvalidInput) -> JSONResponse:
    """A 422, in the language of the request: an OperationOutcome to a FHIR request (whatever
    part of it was wrong, a header included), the JSON error body to any other."""
    if media_type(request.headers.get("content-type")) == FHIR_JSON:
        return JSONResponse(OperationOutcomeError.from_invalid_input(error).to_resource(), status_code=422,
                            media_type=FHIR_JSON)
    return JSONResponse(error.to_dict(), status_code=422)


async def _invalid_input(request: Request, error: InvalidInput) -> JSONResponse:
    return _client_error(request, error)


async def _refused(request: Request, error: RefusedRequest) -> JSONResponse:
    """404, 409…: an OperationOutcome to a FHIR request, ``{"detail"}`` to any other."""
    if media_type(request.headers.get("content-type")) == FHIR_JSON or media_type(
            request.headers.get("accept")) == FHIR_JSON:
        code = {404: "not-found", 409: "conflict"}.get(error.status, "processing")
        return JSONResponse(OperationOutcomeError.one(code, error.detail).to_resource(), status_code=error.status,
                            media_type=FHIR_JSON)
    return JSONResponse({"detail": error.detail}, status_code=error.status)


async def _operation_outcome(_request: Request, error: OperationOutcomeError) -> JSONResponse:
    return JSONResponse(error.to_resource(), status_code=error.status, media_type=FHIR_JSON)


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    return _client_error(request, InvalidInput.from_validation_error(error, detail="The request is invalid."))


async def _client_disconnected(_request: Request, _error: ClientDisconnect) -> Response:
    # The client's doing, not a fault: the access log's one line (status 499) says it all.
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def _database_unavailable(_request: Request, error: DBAPIError | PoolTimeoutError) -> JSONResponse:
    # The driver's message only: statement parameters (case contents) are never logged.
    logger.warning("database unavailable: %s", getattr(error, "orig", None) or type(error).__name__)
    return JSONResponse(
        {"detail": "The database is unavailable, so the request was not carried out and nothing was stored. "
         "Try again shortly."},
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def _unexpected_error(_request: Request, _error: Exception) -> JSONResponse:
    return JSONResponse({"detail": "Internal server error."}, status_code=500)


def _complete_openapi(app: FastAPI) -> None:
    """Put the case model into the OpenAPI components, where the POST body's $ref points, and
    mark each operation with the role its key needs."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            case = app.state.evaluator.case_model.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(case.pop("$defs", {}))
            components["Case"] = case
            _mark_roles(schema)
        return app.openapi_schema

    app.openapi = openapi


def _mark_roles(schema: dict[str, Any]) -> None:
    """What each operation needs, from its security requirement, in its description: the role of
    an API key (also as ``x-required-role``), a CDS Hooks client's JWT, or nothing (then said with
    an empty ``security`` list, as OpenAPI writes "no authentication")."""
    for operations in schema["paths"].values():
        for operation in operations.values():
            requirements = operation.get("security", [])
            roles = [role for requirement in requirements for role in requirement.get("APIKeyHeader", [])]
            if roles:
                # Every role that may do what any scope names (reviewer for intake; the
                # metrics' auditor beside reviewer).
                admitted = " or ".join(f"`{r}`" for r in dict.fromkeys(
                    held for role in roles for held in roles_granting(role)))
                note = f"Needs an API key in `X-API-Key` with the {admitted} role."
                operation["x-required-role"] = roles[0]
            elif any("CdsHooksJWT" in requirement for requirement in requirements):
                note = ("Needs a CDS Hooks client's signed JWT in `Authorization: Bearer` "
                        "(a client listed in `COVERAGE_CRITERIA_CDS_CLIENTS`).")
            else:
                note = "Needs no API key or token."
                operation["security"] = []
            operation["description"] = "\n\n".join(filter(None, [operation.get("description"), note]))


def _log_config() -> dict[str, Any]:
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["service"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    for name in QUIET_LOGGERS:  # the EHR client's transport: warnings only (its DEBUG lines carry headers)
        config["loggers"][name] = {"level": "WARNING"}
    # Every other library's records reach the same handler, and so its filter, not Python's bare
    # last-resort handler.
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    # Every record that reaches serve's handlers comes out printable, from whatever logger.
    config["filters"] = {"printable": {"()": "service.web.middleware.SafeLogRecords"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["printable"]
    return config
