"""Where the service may send a CDS client's FHIR token: the FHIR servers registered for it.

A client's ``fhirServers`` (clients file) are URL prefixes. A URL is under a prefix when, parsed,
its scheme, host and port are the prefix's and its path starts with the prefix's path segment
by segment (``/fhir`` holds ``/fhir/Patient/1``, never ``/fhirEVIL`` or ``/fhir/../admin``).
Matching is done on parsed URLs, never on strings, and refuses what could make a string and the
URL actually requested disagree: userinfo (``https://ehr@evil/``), a ``.`` or ``..`` segment,
percent-encoded separators or dots, backslashes, control characters and spaces, fragments.

Every request the service makes to an EHR goes through :func:`under`: the base ``fhirServer``,
each query and each paging link the EHR returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNSAFE = re.compile(r"[\\\x00-\x20\x7f]")  # backslashes, control characters, spaces: anywhere
_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c|2e)", re.IGNORECASE)  # '/', '\\', '.': in the host or path
_MAX_URL_LENGTH = 2048


class BadUrl(ValueError):
    """A URL the service will not request (the message says why, without echoing it)."""


@dataclass(frozen=True)
class Origin:
    """A parsed http(s) URL: scheme, host and port (default ports filled in), path segments."""

    scheme: str
    host: str
    port: int
    segments: tuple[str, ...]

    def holds(self, other: Origin) -> bool:
        """True when ``other`` is this URL or below it, whole segment by whole segment."""
        return ((self.scheme, self.host, self.port) == (other.scheme, other.host, other.port)
                and other.segments[:len(self.segments)] == self.segments)


def parse(url: str, *, query_allowed: bool = False) -> Origin:
    """The URL's origin and path; BadUrl for anything but a plain absolute http(s) URL."""
    if not isinstance(url, str) or not url or len(url) > _MAX_URL_LENGTH:
        raise BadUrl("not a URL of at most 2,048 characters")
    if _UNSAFE.search(url):
        raise BadUrl("a URL holding spaces, control characters or backslashes")
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadUrl("not a well-formed URL") from None
    if _ENCODED_SEPARATOR.search(parts.netloc + parts.path):
        raise BadUrl("a URL with percent-encoded separators or dots in its host or path")
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        raise BadUrl("not an http(s) URL")
    if "@" in parts.netloc:
        raise BadUrl("a URL with user information")
    if not parts.hostname:
        raise BadUrl("a URL without a host")
    if parts.fragment or (parts.query and not query_allowed):
        raise BadUrl("a base URL with a query or fragment")
    segments = tuple(segment for segment in parts.path.split("/") if segment)
    if any(segment in (".", "..") for segment in segments):
        raise BadUrl("a URL with '.' or '..' path segments")
    scheme = parts.scheme.lower()
    return Origin(scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS[scheme], segments)


def registered(prefixes: list[str], where: str) -> tuple[Origin, ...]:
    """The ``fhirServers`` of a clients file entry, parsed; ValueError naming ``where`` otherwise."""
    found = []
    for index, prefix in enumerate(prefixes):
        try:
            found.append(parse(prefix))
        except BadUrl as error:
            raise ValueError(f"{where}[{index}]: {error}; a FHIR server's base URL is expected") from None
    return tuple(found)


def under(url: str, allowed: tuple[Origin, ...], *, query_allowed: bool = False) -> bool:
    """True when ``url`` is a plain http(s) URL under one of ``allowed``."""
    try:
        origin = parse(url, query_allowed=query_allowed)
    except BadUrl:
        return False
    return any(prefix.holds(origin) for prefix in allowed)
