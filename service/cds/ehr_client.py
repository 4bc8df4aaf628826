"""Reads from the EHR's FHIR server what a CDS Hooks call's prefetch left out.

The queries are the discovery document's prefetch templates with the call's patient filled in,
sent to ``fhirServer`` with the call's ``fhirAuthorization`` bearer token, all at once and within
the time left of CDS Hooks' 5-second budget. Every URL requested, paging links included, must lie
under a FHIR server registered for the client (service.cds.fhir_servers): the token goes nowhere
else, and neither redirects nor proxies from the environment are followed.

Bounded whatever the EHR answers: each answer is streamed and cut off past
:data:`MAX_ANSWER_BYTES` (all reads of one call together: :data:`MAX_READ_BYTES`); compressed
answers are not accepted (``Accept-Encoding: identity``), so nothing expands in memory; JSON nested
deeper than service.cds.bounded_json allows is refused; a search follows at most
:data:`MAX_PAGES` pages and keeps at most :data:`MAX_ENTRIES` entries. What a limit left unread
is returned as a note for the answer, never dropped silently. Nothing of what is read is logged,
and the URLs httpx and httpcore would log (they carry the patient's id) are cut to their origin.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from service.cds.bounded_json import Unreadable, loads
from service.cds.fhir_servers import Origin, under

logger = logging.getLogger("service.cds")
MAX_PAGES = 5
MAX_ENTRIES = 1000  # per search, all its pages together
MAX_ANSWER_BYTES = 2 * 1024 * 1024
MAX_READ_BYTES = 8 * 1024 * 1024  # every answer read for one call together
_CHUNK = 64 * 1024


class EhrUnavailable(Exception):
    """The EHR's FHIR server could not be read (down, too slow, failing): a technical failure."""

    status = 503


class EhrRefused(EhrUnavailable):
    """The EHR's FHIR server refused the token it gave us (401/403)."""

    status = 412


class _TooLarge(Exception):
    """An answer over the limit: ``limit`` bytes, the smaller of one answer's and what the call had left."""

    def __init__(self, limit: int):
        super().__init__(limit)
        self.what = (f"over {_mib(MAX_ANSWER_BYTES)}" if limit >= MAX_ANSWER_BYTES
                     else f"over the {_mib(MAX_READ_BYTES)} one call reads")


@dataclass
class Reading:
    """What the reads produced: each query's answer (a resource, a searchset Bundle of every page
    read, or None when the server has nothing), and what the limits left unread, in words."""

    answers: dict[str, Any] = field(default_factory=dict)
    not_read: list[str] = field(default_factory=list)
    bytes_left: int = MAX_READ_BYTES  # of all reads of the call, counted as the bytes arrive


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every call: building one (CA bundle and all) costs ~30 ms, per client
    httpx would make (~70 ms with httpx's own setup), more than the reads themselves."""
    return ssl.create_default_context()


def fill(template: str, patient_id: str) -> str:
    """A prefetch template with ``{{context.patientId}}`` filled in, URL-escaped."""
    return template.replace("{{context.patientId}}", quote(patient_id, safe=""))


async def read_missing(
    fhir_server: str, access_token: str, queries: dict[str, str], deadline: float,
    allowed: tuple[Origin, ...], client: httpx.AsyncClient | None = None,
) -> Reading:
    """Each query read before ``deadline`` (``time.monotonic()``) from ``fhir_server``, which
    the caller has found under ``allowed``; EhrUnavailable when the server cannot be read."""
    base = fhir_server.rstrip("/")
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json",
               "Accept-Encoding": "identity"}
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise EhrUnavailable("no time was left to read the EHR's FHIR server")
    reading = Reading()
    own_client = client is None
    client = client or httpx.AsyncClient(timeout=httpx.Timeout(remaining), follow_redirects=False,
                                         verify=_tls(), trust_env=False)
    try:
        keys = list(queries)
        answers = await asyncio.wait_for(
            asyncio.gather(*(_read(client, key, f"{base}/{queries[key]}", headers, deadline, allowed, reading)
                             for key in keys)),
            timeout=remaining,
        )
    except (asyncio.TimeoutError, httpx.TimeoutException):
        raise EhrUnavailable("the EHR's FHIR server did not answer within the time CDS Hooks allows") from None
    except httpx.TransportError as error:
        raise EhrUnavailable(f"the EHR's FHIR server could not be reached ({type(error).__name__})") from None
    finally:
        if own_client:
            await client.aclose()
    reading.answers = dict(zip(keys, answers))
    return reading


async def _read(client: httpx.AsyncClient, key: str, url: str, headers: dict[str, str], deadline: float,
                allowed: tuple[Origin, ...], reading: Reading) -> Any:
    if not under(url, allowed, query_allowed=True):  # the patient's id could not make a URL outside
        reading.not_read.append(f"{key}: its query would leave the registered FHIR server")
        return None
    try:
        first = await _get(client, url, headers, deadline, reading)
    except _TooLarge as error:
        reading.not_read.append(f"{key}: the EHR's answer was {error.what}")
        return None
    if not (isinstance(first, dict) and first.get("resourceType") == "Bundle"):
        return first
    entries = [e for e in first.get("entry") or [] if isinstance(e, dict)] if isinstance(first.get("entry"), list) else []
    page, pages = first, 1
    while (following := _next_link(page)) is not None:
        if len(entries) >= MAX_ENTRIES:
            reading.not_read.append(f"{key}: entries after the first {MAX_ENTRIES:,}")
            break
        if pages >= MAX_PAGES:
            reading.not_read.append(f"{key}: pages after the first {MAX_PAGES}")
            break
        if time.monotonic() >= deadline:
            reading.not_read.append(f"{key}: pages after the {_ordinal(pages)}, for want of time")
            break
        if not under(following, allowed, query_allowed=True):
            reading.not_read.append(f"{key}: a next page outside the registered FHIR server (not followed)")
            break
        try:
            page = await _get(client, following, headers, deadline, reading)
        except _TooLarge as error:
            reading.not_read.append(f"{key}: pages after the {_ordinal(pages)}, {error.what}")
            break
        if not isinstance(page, dict) or not isinstance(page.get("entry", []), list):
            break
        entries += [e for e in page.get("entry") or [] if isinstance(e, dict)]
        pages += 1
    if len(entries) > MAX_ENTRIES:
        reading.not_read.append(f"{key}: entries after the first {MAX_ENTRIES:,}")
        entries = entries[:MAX_ENTRIES]
    return {**first, "entry": entries}


def _next_link(bundle: dict[str, Any]) -> str | None:
    links = bundle.get("link") if isinstance(bundle.get("link"), list) else []
    found = next((link.get("url") for link in links if isinstance(link, dict) and link.get("relation") == "next"), None)
    return found if isinstance(found, str) else None


async def _get(client: httpx.AsyncClient, url: str, headers: dict[str, str], deadline: float,
               reading: Reading) -> Any:
    timeout = max(deadline - time.monotonic(), 0.001)
    async with client.stream("GET", url, headers=headers, timeout=timeout) as response:
        if response.status_code in (401, 403):
            raise EhrRefused(f"the EHR's FHIR server refused the access token (HTTP {response.status_code})")
        if response.status_code >= 500:
            raise EhrUnavailable(f"the EHR's FHIR server failed (HTTP {response.status_code})")
        if response.status_code != 200:
            # 404: nothing there; 400: a search the server does not support. Either way: no data.
            logger.info("EHR FHIR server answered HTTP %s to a query; read as no data", response.status_code)
            return None
        if response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
            raise EhrUnavailable("the EHR's FHIR server sent a compressed answer (identity was asked for)")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > min(MAX_ANSWER_BYTES, reading.bytes_left):
            raise _TooLarge(min(MAX_ANSWER_BYTES, reading.bytes_left))
        chunks, size = [], 0
        async for chunk in response.aiter_raw(_CHUNK):  # the reads of a call run side by side: count as read
            size += len(chunk)
            reading.bytes_left -= len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise _TooLarge(MAX_ANSWER_BYTES)
            if reading.bytes_left < 0:
                raise _TooLarge(0)
            chunks.append(chunk)
    try:
        return loads(b"".join(chunks))
    except Unreadable as error:
        raise EhrUnavailable(f"the EHR's FHIR server answered with something other than usable JSON ({error})") from None


def _mib(size: int) -> str:
    return f"{size // (1024 * 1024)} MiB"


def _ordinal(number: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(number, f"{number}th")


class _OriginOnly(logging.Filter):
    """httpx logs every request's URL at INFO (``HTTP Request: GET https://ehr/fhir/Observation?
    patient=123``), httpcore the response headers at DEBUG (``Content-Location`` may name the
    patient): keep the origin of a URL, drop the headers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(f"{arg.scheme}://{arg.netloc.decode('ascii', 'replace')}/…"
                                if isinstance(arg, httpx.URL) else arg for arg in record.args)
        return "response_headers" not in str(record.msg)


for _name in ("httpx", "httpcore.http11", "httpcore.http2", "httpcore.connection", "httpcore.proxy"):
    logging.getLogger(_name).addFilter(_OriginOnly())
