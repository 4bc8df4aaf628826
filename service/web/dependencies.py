"""Request dependencies: the database, the evaluator, and API-key authentication with roles and
a rate limit per key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.engine.evaluation import Evaluator
from service.store.keys import KeyRecord, authenticate
from service.web.ratelimit import RateLimiter
from service.store.database import Database

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="An API key from `coverage-criteria keys create --role intake|reviewer|auditor [--org ORG]`.",
)
# FHIR clients (DTR apps, PAS clients) send credentials as a bearer token: the same API key.
bearer_header = HTTPBearer(
    auto_error=False,
    description="The same API key as `Authorization: Bearer <key>`, as FHIR clients send credentials.",
)


# async, though they do not wait for anything: FastAPI runs a plain ``def`` dependency in its thread
# pool, a hop that costs more than these lookups.
async def get_database(request: Request) -> Database:
    return request.app.state.database


async def get_evaluator(request: Request) -> Evaluator:
    return request.app.state.evaluator


DatabaseDep = Annotated[Database, Depends(get_database)]
EvaluatorDep = Annotated[Evaluator, Depends(get_evaluator)]


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    """The API key a request presents: its X-API-Key header, else a Bearer token (as
    ``bearer_header`` reads one), for paths that read headers themselves (service.api.lean_post)."""
    if x_api_key is not None:
        return x_api_key
    scheme, _, credentials = (authorization or "").partition(" ")
    credentials = credentials.strip()
    return credentials if scheme and credentials and scheme.lower() == "bearer" else None


def admit(app_state: Any, scope: dict[str, Any], presented: str | None, role: str,
          also: tuple[str, ...] = ()) -> KeyRecord:
    """The active key ``presented`` (X-API-Key) if it may do what ``role`` (or one of the roles
    ``also`` names) may: HTTPException 401 without one, 429 with Retry-After when it has used up
    its rate limit, 403 if its role falls short. Leaves the key in the request's state (``key``,
    ``key_id``) for the access log and the audit trail. (The dependencies below, and the lean
    path of ``POST /v1/evaluations``, service.api.lean_post, both admit keys so.)"""
    key = authenticate(app_state.database, presented)
    if key is None:
        raise HTTPException(401, detail="A valid API key is required in the X-API-Key header.")
    state = scope.setdefault("state", {})
    state["key_id"], state["key"] = key.id, key
    limiter: RateLimiter | None = app_state.rate_limiter
    if limiter is not None and (wait := limiter.retry_after(key.id)):
        raise HTTPException(
            429,
            detail=f"This key is limited to {limiter.per_minute} requests a minute; retry after {wait} s.",
            headers={"Retry-After": str(wait)},
        )
    if not key.has_role(role, *also):
        raise HTTPException(403, detail=f"This request needs a key with the {' or '.join((role, *also))} role.")
    return key


def require_role(role: str, *, also: tuple[str, ...] = ()):
    """A dependency that admits an active key that may do what ``role`` (or one of the roles
    ``also`` names) may (see :func:`admit`). The key is left in ``request.state.key``: who made
    the request, for the access log and the audit trail."""

    # async, so that FastAPI runs it on the event loop: the indexed select it makes costs less than
    # the hand-off to a pool thread that a plain ``def`` would get.
    async def authorized_key(
        request: Request,
        presented: Annotated[str | None, Security(api_key_header)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_header)],
    ) -> KeyRecord:
        return admit(request.app.state, request.scope,
                     presented if presented is not None else bearer.credentials if bearer else None, role, also)

    return authorized_key


# The role doubles as the OpenAPI security requirement's scope (OpenAPI 3.1 allows role names
# there for API keys); service.app also copies it into each operation's text. Each key is a
# caller for the reads of case data (store/tenancy.py): its role and organization say what it sees.
IntakeKey = Annotated[KeyRecord, Security(require_role("intake"), scopes=["intake"])]
ReviewerKey = Annotated[KeyRecord, Security(require_role("reviewer"), scopes=["reviewer"])]
AuditorKey = Annotated[KeyRecord, Security(require_role("auditor"), scopes=["auditor"])]
# The CMS-0057-F figures: reviewers, and auditors (a role that reads the audit trail and the metrics only).
MetricsKey = Annotated[KeyRecord, Security(require_role("reviewer", also=("auditor",)), scopes=["reviewer", "auditor"])]
