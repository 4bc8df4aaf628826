"""Entries of a PAS Bundle, and the references between them.

PAS spec-13: a request Bundle holds every resource its Claim references, following references
through the resources reached; spec-33: the response uses the same fullUrls. A reference resolves
as FHIR R4 resolves one inside a Bundle: an absolute URL or ``urn:uuid:`` by equal ``fullUrl``; a
relative ``Type/id`` against the base of the referencing entry's ``fullUrl``, else by the type
and id of the entry's resource. ``#contained`` references stay inside their resource.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from service.fhir.outcome import Issue
from service.fhir.parse import Located

_RELATIVE = re.compile(r"([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})")
_HISTORY = re.compile(r"/_history/[^/]*$")
_ABSOLUTE = ("http://", "https://", "urn:uuid:", "urn:oid:")


@dataclass(frozen=True)
class Entry:
    """One entry: its position, its fullUrl, its resource."""

    index: int
    full_url: str | None
    resource: dict[str, Any]

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}].resource"

    @property
    def type(self) -> str:
        kind = self.resource.get("resourceType")
        return kind if isinstance(kind, str) else ""

    @property
    def located(self) -> Located:
        return Located(self.resource, self.path)


@dataclass(frozen=True)
class Reference:
    """A ``Reference.reference`` met in a resource: where it is (FHIRPath) and what it says."""

    path: str
    text: str


def base_of(full_url: str | None) -> str | None:
    """``https://ehr.example/fhir`` for ``https://ehr.example/fhir/Claim/1``; None for a URN."""
    if not isinstance(full_url, str) or not full_url.startswith(("http://", "https://")):
        return None
    parts = full_url.rstrip("/").rsplit("/", 2)
    return parts[0] if len(parts) == 3 and _RELATIVE.fullmatch(f"{parts[1]}/{parts[2]}") else None


class BundleIndex:
    """The entries of a Bundle (those holding a resource object), findable by fullUrl and type/id."""

    def __init__(self, entries: list[Entry]):
        self.entries = entries
        self._by_url: dict[str, list[Entry]] = {}
        self._by_type_id: dict[tuple[str, str], list[Entry]] = {}
        for entry in entries:
            if entry.full_url:
                self._by_url.setdefault(entry.full_url, []).append(entry)
            rid = entry.resource.get("id")
            if isinstance(rid, str):
                self._by_type_id.setdefault((entry.type, rid), []).append(entry)

    @classmethod
    def of(cls, bundle: dict[str, Any]) -> BundleIndex:
        entries = bundle.get("entry")
        found = []
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict):
                full_url = entry.get("fullUrl")
                found.append(Entry(index, full_url if isinstance(full_url, str) else None, resource))
        return cls(found)

    def resolve(self, reference: str, source: Entry) -> list[Entry]:
        """The entries ``reference`` (written in ``source``) names: one when it resolves, none when
        the Bundle lacks it, several when the Bundle holds it more than once."""
        text = _HISTORY.sub("", reference)
        if text.startswith(_ABSOLUTE):
            found = self._by_url.get(text, [])
            if found or text.startswith("urn:"):
                return found
            tail = text.rstrip("/").rsplit("/", 2)
            text = f"{tail[-2]}/{tail[-1]}" if len(tail) == 3 else text
        match = _RELATIVE.fullmatch(text)
        if match is None:
            return []
        base = base_of(source.full_url)
        if base is not None and (found := self._by_url.get(f"{base}/{text}")):
            return found
        return self._by_type_id.get((match.group(1), match.group(2)), [])

    def full_url_of(self, entry: Entry) -> str:
        """The URL another resource of the response uses to reference ``entry``."""
        return entry.full_url or f"{entry.type}/{entry.resource.get('id')}"

    def closure(self, start: Entry, *, skip_start: tuple[str, ...] = ()) -> tuple[list[Entry], list[Issue]]:
        """Every entry reached from ``start`` by following references (``start`` excluded), in the
        order met, and an issue for each reference that names no entry or more than one. Elements
        named in ``skip_start`` (top-level names of ``start``) are not followed."""
        seen = {start.index}
        reached: list[Entry] = []
        issues: list[Issue] = []
        queue = deque([start])
        while queue:
            entry = queue.popleft()
            skip = skip_start if entry is start else ()
            for ref in references(entry.resource, entry.path, skip):
                found = self.resolve(ref.text, entry)
                if len(found) != 1:
                    issues.append(Issue("required" if not found else "structure",
                                        _unresolved(ref.text, len(found)), ref.path))
                    continue
                target = found[0]
                if target.index not in seen:
                    seen.add(target.index)
                    reached.append(target)
                    queue.append(target)
        return reached, issues


def _unresolved(text: str, count: int) -> str:
    shown = text if len(text) <= 120 else text[:117] + "..."
    if count == 0:
        return f"The reference {shown!r} names no entry of the Bundle; PAS requires every referenced resource in it."
    return f"The reference {shown!r} names {count} entries of the Bundle; it must name exactly one."


def references(value: Any, path: str, skip: tuple[str, ...] = ()) -> Iterator[Reference]:
    """Every ``Reference.reference`` inside a resource or element, with its FHIRPath; contained
    resources and ``#local`` references are left out."""
    if isinstance(value, dict):
        text = value.get("reference")
        if isinstance(text, str) and text and not text.startswith("#"):
            yield Reference(f"{path}.reference", text)
        for key, child in value.items():
            if key in skip or key in ("contained", "reference", "text") or not isinstance(child, (dict, list)):
                continue
            yield from references(child, f"{path}.{key}")
    elif isinstance(value, list):
        for position, child in enumerate(value):
            yield from references(child, f"{path}[{position}]")
