"""ASGI middleware: one access-log line per request, the request body size limit, and
``Cache-Control: no-store``; and the filter every log record of the service and of uvicorn passes
through, which escapes what a client sent, keeps query strings out of uvicorn's access log, keeps
exception messages out of tracebacks and patient ids out of the URLs httpx logs."""

from __future__ import annotations

import logging
import re
import time
import traceback
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_logger = logging.getLogger("service.access")


# Printable ASCII but the backslash, which is escaped too so that an escape cannot be forged.
_UNSAFE = re.compile(r"[^\x20-\x5b\x5d-\x7e]")


def _escape_character(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x5C:
        return "\\\\"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: str) -> str:
    """``value`` with every character outside printable ASCII (and the backslash) escaped as
    ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``: a logged value can neither start a new line nor
    hide behind control or bidi characters."""
    return _UNSAFE.sub(_escape_character, value)


def _printable_arg(arg: object) -> object:
    if isinstance(arg, bytes):
        arg = arg.decode("latin-1")
    return printable(arg) if isinstance(arg, str) else arg


_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]+$")


def url_without_ids(url: str) -> str:
    """A URL as it may be logged: origin (no userinfo) and path up to its first FHIR resource type,
    the rest and the query replaced by ``...`` (``https://ehr/fhir/Observation?...``): what follows a
    resource type (``Patient/123``, ``?patient=123``) names a patient."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(a URL)"
    kept = []
    segments = parts.path.split("/")
    for index, segment in enumerate(segments):
        kept.append(segment)
        if _RESOURCE_TYPE.match(segment):
            if index + 1 < len(segments):
                kept.append("...")
            break
    query = "?..." if parts.query else ""
    return f"{parts.scheme}://{host}{port}{'/'.join(kept)}{query}"


def _without_message(exc_info: tuple) -> str:
    """An exception as logged: its type and where it was raised, each frame file:line in function,
    causes too; never its message, which may quote what a client sent."""
    described = []
    error: BaseException | None = exc_info[1]
    while error is not None and len(described) < 5:
        frames = traceback.extract_tb(error.__traceback__)
        where = "; ".join(f"{frame.filename.rsplit('/site-packages/', 1)[-1]}:{frame.lineno} in {frame.name}"
                          for frame in frames[-12:])
        described.append(f"{type(error).__module__}.{type(error).__qualname__} at {where or 'an unknown place'}")
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return " | caused by ".join(described)


class SafeLogRecords(logging.Filter):
    """Every log record comes out as one line of printable ASCII: its message and arguments
    escaped, a path argument without its query string, which can carry case contents
    (``?external_id=…``; uvicorn's access log is off under ``serve``, on when the app is run by
    other means), an exception as its type and frames without its message (which may quote what a
    client sent), and the URLs of the EHR's FHIR server that httpx logs without the patient ids
    they hold. On the loggers that see requests, and on the handlers of ``serve``'s log config."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_printable", False):
            return True
        outside = record.name.startswith(("httpx", "httpcore"))
        if isinstance(record.msg, str):  # a trailing newline ends the line anyway (uvicorn writes some)
            record.msg = printable(record.msg.rstrip("\n"))
        if isinstance(record.args, tuple):
            record.args = tuple(_safe_arg(arg, outside) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {name: _safe_arg(arg, outside) for name, arg in record.args.items()}
        if record.exc_info:
            # Folded into the message (no arguments left to format it with): one line, not a traceback.
            record.msg = f"{record.getMessage()} [{printable(_without_message(record.exc_info))}]"
            record.args, record.exc_info, record.exc_text = (), None, None
        if record.stack_info:
            record.stack_info = printable(record.stack_info)
        record._printable = True
        return True


def _safe_arg(arg: object, outside: bool) -> object:
    if outside and ("://" in str(arg)):
        return printable(url_without_ids(str(arg)))
    return _printable_arg(arg.partition("?")[0] if isinstance(arg, str) and arg.startswith("/") else arg)


safe_log_records = SafeLogRecords()
REQUEST_LOGGERS = ("service", "service.access", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi",
                   "httpx")
# The EHR client's HTTP transport: httpcore logs request and response headers at DEBUG (a
# Content-Location may name the patient); kept to warnings whatever level the rest of the logging
# is set to. httpx's one line per request (INFO) stays, its URL cut at the resource type above.
QUIET_LOGGERS = ("httpcore", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy",
                 "hpack", "h11")


class _WarningsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_warnings_only = _WarningsOnly()


def make_logs_safe() -> None:
    """Put the filter on every logger that sees requests, and quiet the HTTP transport's loggers
    (once, however often it is called)."""
    for name in REQUEST_LOGGERS:
        logging.getLogger(name).addFilter(safe_log_records)
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        logger.addFilter(_warnings_only)  # a record below WARNING is dropped even if a level is lowered later


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


class NoStoreMiddleware:
    """``Cache-Control: no-store`` on every response that does not set its own: results and error
    bodies hold case data, which no browser or proxy cache may keep."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_no_store)


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
