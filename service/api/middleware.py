"""ASGI middleware: one access-log line per request, and the request body size limit; and a
filter that keeps query strings out of uvicorn's own access log."""

from __future__ import annotations

import logging
import time

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_logger = logging.getLogger("service.access")


class DropQueryStrings(logging.Filter):
    """For uvicorn's access log (off under ``serve``, on when the app is run by other means):
    a query string can carry case contents (``?external_id=…``), so only the path is logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                arg.partition("?")[0] if isinstance(arg, str) and arg.startswith("/") else arg for arg in record.args
            )
        return True


drop_query_strings = DropQueryStrings()


class AccessLogMiddleware:
    """Logs method, path (never the query string), status, key id and latency; never bodies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            access_logger.info(
                "%s %s %d key=%s %.1fms",
                scope["method"],
                scope["path"],
                status,
                scope.get("state", {}).get("key_id", "-"),
                (time.perf_counter() - started) * 1000,
            )


class BodySizeLimitMiddleware:
    """Answers 413 when the declared Content-Length, or the bytes actually streamed, exceed the limit."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            response = JSONResponse({"detail": self._message()}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Raised inside the endpoint's body read; FastAPI turns it into a JSON 413.
                    raise HTTPException(413, detail=self._message())
            return message

        await self.app(scope, receive_within_limit, send)

    def _message(self) -> str:
        return f"The request body is larger than the limit of {self.max_body_bytes} bytes."
