"""The lean path of ``POST /v1/evaluations`` with a JSON case: the service's busiest request
answered without FastAPI's routing, dependency solving and exception middleware, which cost it
more CPU than the evaluation itself (measured: ~0.25 ms of ~1.2 ms a request).

It is the innermost of the service's middlewares (service.app), so the audit trail, the access
log, ``no-store``, the body size limit and the server error handling wrap it as they wrap every
route; it does what the route's dependencies and FastAPI's exception middleware would (the audit
record begun, the key admitted by ``web.dependencies.admit``, the same handler for each error,
the app's own) and hands the rest of the work to the route's own function
(``post_evaluation``), so both answer alike. Anything else, FHIR Bundles included, goes on to
FastAPI unchanged.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.routers.evaluations import post_evaluation
from service.audit.record import Access
from service.fhir.outcome import FHIR_JSON
from service.store.idempotency import HEADER
from service.web.dependencies import admit, presented_key
from service.web.media import media_type

PATH = "/v1/evaluations"
_IDEMPOTENCY_KEY = HEADER.lower().encode()


class LeanEvaluationPost:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        content_type = x_api_key = authorization = idempotency_key = None
        for name, value in scope["headers"]:  # the first of each, as Starlette's Headers.get
            if name == b"content-type":
                content_type = content_type if content_type is not None else value.decode("latin-1")
            elif name == b"x-api-key":
                x_api_key = x_api_key if x_api_key is not None else value.decode("latin-1")
            elif name == b"authorization":
                authorization = authorization if authorization is not None else value.decode("latin-1")
            elif name == _IDEMPOTENCY_KEY:
                idempotency_key = idempotency_key if idempotency_key is not None else value.decode("latin-1")
        if media_type(content_type) == FHIR_JSON:
            await self.app(scope, receive, send)
            return
        app = scope["app"]
        # The route's audit record, begun as its ``audited("create", "evaluation")`` begins it
        # (service.web.audit), before the key is checked: the audit middleware outside writes it
        # for any answer but a stored evaluation's, whose record is stored with it.
        client = scope.get("client")
        access = scope.setdefault("state", {})["audit"] = Access("create", "evaluation",
                                                                 client_ip=client[0] if client else None)
        try:
            key = admit(app.state, scope, presented_key(x_api_key, authorization), "intake")
            body = await _body(receive)
            response = await post_evaluation(app.state, key, access, scope["path"], content_type, idempotency_key,
                                             body, {})
        except Exception as error:
            handler = _handler(app.exception_handlers, error)
            if handler is None:  # to the server error middleware, as from any route
                raise
            response = handler(Request(scope, receive), error)
            if not isinstance(response, Response):  # the service's handlers are coroutines
                response = await response
        await response(scope, receive, send)


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _handler(handlers: dict[Any, Any], error: Exception) -> Any:
    """The app's handler for ``error``, as Starlette's exception middleware finds it (an
    ``Exception`` handler is the server error middleware's, outside this one)."""
    if isinstance(error, HTTPException) and error.status_code in handlers:
        return handlers[error.status_code]
    for kind in type(error).__mro__:
        if kind is Exception:
            return None
        if kind in handlers:
            return handlers[kind]
    return None
