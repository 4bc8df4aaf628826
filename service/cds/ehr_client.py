"""Reads from the EHR's FHIR server what a CDS Hooks call's prefetch left out.

The queries are the discovery document's prefetch templates with the call's patient filled in,
sent to ``fhirServer`` with the call's ``fhirAuthorization`` bearer token, all at once and within
the time left of CDS Hooks' 5-second budget. A search follows its ``next`` pages while time is
left. Nothing of what is read is logged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

logger = logging.getLogger("service.cds")
MAX_PAGES = 5


class EhrUnavailable(Exception):
    """The EHR's FHIR server could not be read (down, too slow, failing): a technical failure."""

    status = 503


class EhrRefused(EhrUnavailable):
    """The EHR's FHIR server refused the token it gave us (401/403)."""

    status = 412


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
    client: httpx.AsyncClient | None = None,
) -> dict[str, Any]:
    """Each query's answer (a resource, a searchset Bundle of every page read, or None when the
    server has nothing), read before ``deadline`` (``time.monotonic()``); EhrUnavailable else."""
    if urlsplit(fhir_server).scheme not in ("http", "https"):
        raise EhrUnavailable("fhirServer is not an http(s) URL")
    base = fhir_server.rstrip("/") + "/"
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json"}
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise EhrUnavailable("no time was left to read the EHR's FHIR server")
    own_client = client is None
    client = client or httpx.AsyncClient(timeout=httpx.Timeout(remaining), follow_redirects=False, verify=_tls())
    try:
        keys = list(queries)
        answers = await asyncio.wait_for(
            asyncio.gather(*(_read(client, urljoin(base, queries[k]), headers, deadline) for k in keys)),
            timeout=remaining,
        )
    except (asyncio.TimeoutError, httpx.TimeoutException):
        raise EhrUnavailable("the EHR's FHIR server did not answer within the time CDS Hooks allows") from None
    except httpx.TransportError as error:
        raise EhrUnavailable(f"the EHR's FHIR server could not be reached ({type(error).__name__})") from None
    finally:
        if own_client:
            await client.aclose()
    return dict(zip(keys, answers))


async def _read(client: httpx.AsyncClient, url: str, headers: dict[str, str], deadline: float) -> Any:
    first = await _get(client, url, headers, deadline)
    if not (isinstance(first, dict) and first.get("resourceType") == "Bundle"):
        return first
    entries = list(first.get("entry") or [])
    page, pages = first, 1
    while pages < MAX_PAGES and time.monotonic() < deadline:
        following = next((link.get("url") for link in page.get("link") or []
                          if isinstance(link, dict) and link.get("relation") == "next"), None)
        if not isinstance(following, str) or urlsplit(following).netloc != urlsplit(url).netloc:
            break
        page = await _get(client, following, headers, deadline)
        if not isinstance(page, dict):
            break
        entries += page.get("entry") or []
        pages += 1
    return {**first, "entry": entries}


async def _get(client: httpx.AsyncClient, url: str, headers: dict[str, str], deadline: float) -> Any:
    response = await client.get(url, headers=headers, timeout=max(deadline - time.monotonic(), 0.001))
    if response.status_code in (401, 403):
        raise EhrRefused(f"the EHR's FHIR server refused the access token (HTTP {response.status_code})")
    if response.status_code >= 500:
        raise EhrUnavailable(f"the EHR's FHIR server failed (HTTP {response.status_code})")
    if response.status_code != 200:
        # 404: nothing there; 400: a search the server does not support. Either way: no data.
        logger.info("EHR FHIR server answered HTTP %s to a query; read as no data", response.status_code)
        return None
    try:
        return response.json()
    except ValueError:
        raise EhrUnavailable("the EHR's FHIR server answered with something other than JSON") from None
