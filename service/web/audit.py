"""Auditing a route takes one line in its decorator: ``dependencies=[audited("read",
"evaluation", "evaluation_id")]``. Every request the route answers then leaves exactly one
record, with the status it was answered with, whatever the outcome (401, 404 and 422 too: the
route's own dependencies, the key check among them, run after this one):

- written by :class:`AuditMiddleware` once the response's status is known and before the
  response is sent (group commit; a success whose record cannot be stored is answered 503
  instead, so no case data leaves without its record);
- or with the request's own write, when the route stores case data: it takes the record with
  ``audit_of(request).rows(status)`` into its transaction (or group commit), calls
  ``.committed()`` once that has committed, and the record is then not written again. A route
  may also settle ``resource_id`` (what it created) or ``action`` (a failed sign-in) there.

Who made the request is whoever authenticated it: an API key (``request.state.key``, set by
``web.dependencies`` and the review page's session) or a CDS Hooks client
(``request.state.cds_client``).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.audit.record import Access, Actor

logger = logging.getLogger("service.audit")
UNAVAILABLE_RETRY_AFTER_SECONDS = 5


def audited(action: str, resource: str, id_param: str | None = None) -> Any:
    """A route dependency (for its decorator's ``dependencies``) recording each request as
    ``action`` on ``resource``, whose id is the path parameter ``id_param`` (if any)."""
    Access(action, resource)  # refuses an action or resource the contract does not list, at import

    async def record_access(request: Request) -> None:
        resource_id = request.path_params.get(id_param) if id_param else None
        request.state.audit = Access(action, resource, resource_id,
                                     client_ip=request.client.host if request.client else None)

    return Depends(record_access)


def audit_of(request: Request) -> Access:
    """The request's record in the making (its route declared :func:`audited`), naming who made
    the request as soon as it has been authenticated, so a record the route writes with its own
    rows names its actor as one the middleware writes does."""
    access: Access = request.state.audit
    if access.actor is None:
        access.actor = actor_of(request.scope.get("state") or {})
    return access


def actor_of(state: dict[str, Any]) -> Actor | None:
    """Who authenticated the request, from what the authenticating dependency left in its state."""
    if (key := state.get("key")) is not None:
        return Actor.of_key(key)
    if (client := state.get("cds_client")) is not None:  # a service.cds.auth.Client
        return Actor.of_cds_client(state.get("key_id"), client.issuer, client.organization)
    return None


class AuditMiddleware:
    """Writes the record of an audited request (one whose route declared :func:`audited`) when
    its response starts, unless the route wrote it with its own data; a response that never
    starts (an unexpected error) is recorded as a 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = replaced = False

        async def send_after_record(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the rest of a response that was not sent
            if message["type"] == "http.response.start":
                started = True
                if not await self._record(scope, message["status"]):
                    replaced = True
                    await _unavailable(scope, receive, send)
                    return
            await send(message)

        try:
            await self.app(scope, receive, send_after_record)
        except Exception:
            if not started:
                await self._record(scope, 500)
            raise

    async def _record(self, scope: Scope, status: int) -> bool:
        """Write the request's record, if it has one not yet written; False when that failed for
        a response that would have carried case data (it must not be sent)."""
        state = scope.get("state") or {}
        access: Access | None = state.get("audit")
        if access is None or access.written:
            return True
        if access.actor is None:
            access.actor = actor_of(state)
        try:
            await access.write(scope["app"].state.database, status)
        except Exception as error:  # noqa: BLE001 - whatever it was, the record is not stored
            logger.warning("audit record not stored: %s", getattr(error, "orig", None) or type(error).__name__)
            return status >= 400
        return True


async def _unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse(
        {"detail": "The audit trail could not record this request (the database is unavailable), so its "
         "answer is withheld. Try again shortly."},
        status_code=503,
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECONDS)},
    )
    await response(scope, receive, send)
