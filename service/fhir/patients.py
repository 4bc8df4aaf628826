"""One patient per request: the Patient resources a request holds and the patients its resources
name must all be one person, with or without ids.

Each Patient resource is known by every name it carries: ``Patient/<id>``, its entry's
``fullUrl`` (and the id at the end of an absolute one), and each ``identifier`` (system and
value). Each ``subject`` or ``patient`` reference of the other resources names a patient by a
relative or absolute ``Patient/<id>`` URL, a ``urn:uuid:`` / ``urn:oid:`` fullUrl (resolved to
the entry it names), a contained resource (``#p1``), or a logical ``identifier``. Names that a
Patient resource carries together are one patient; the request is refused (422, ``business-rule``)
when the names fall into more than one patient, since nothing shows they are the same person:
two Patient resources without ids, or resources naming ``Patient/a`` and ``Patient/b`` without
any Patient resource, are two patients. A reference to another kind of subject (``Group/…``,
a ``type`` other than Patient) is not a patient's name and is left alone.
"""

from __future__ import annotations

import re
from typing import Any, Hashable, Sequence

from service.fhir.outcome import Issue, OperationOutcomeError
from service.fhir.parse import Located

_PATIENT_URL = re.compile(r"(?:^|/)Patient/([^/]+?)(?:/_history/[^/]+)?$")
_OTHER_TYPE = re.compile(r"(?:^|/)[A-Z][A-Za-z]+/[^/]+(?:/_history/[^/]+)?$")
_SUBJECT_ELEMENTS = ("subject", "patient")


def one_patient(items: Sequence[Located]) -> None:
    """Raise an OperationOutcomeError (422) naming each patient beyond the first when the
    Patient resources among ``items`` and the patients their other resources name are not all
    one patient. ``Located.full_url`` (a Bundle entry's fullUrl) is used when present."""
    names = _Names()
    by_url = {item.full_url: item for item in items if item.full_url}
    for item in items:
        if item.type == "Patient":
            names.join(_patient_names(item), _label(item), item.path)
    for item in items:
        if item.type == "Patient":
            continue
        for element in _SUBJECT_ELEMENTS:
            found = _referenced(item, element, by_url)
            if found is not None:
                keys, label, part = found
                names.join(keys, label, f"{item.path}.{element}.{part}")
    patients = names.patients()
    if len(patients) > 1:
        first = patients[0][0]
        raise OperationOutcomeError([
            Issue("business-rule", f"A request describes one patient; this one also names {label} besides {first}: "
                  "send each patient's resources in a request of its own.", where)
            for label, where in patients[1:]
        ])


def _patient_names(item: Located) -> set[Hashable]:
    resource = item.resource
    names: set[Hashable] = set()
    rid = resource.get("id")
    if isinstance(rid, str) and rid:
        names.add(("id", rid))
    if item.full_url:
        names.add(("url", item.full_url))
        match = _PATIENT_URL.search(item.full_url)
        if match:
            names.add(("id", match.group(1)))
    identifiers = resource.get("identifier")
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if name := _identifier(identifier):
            names.add(name)
    return names or {("entry", item.path)}  # no name at all: a patient of its own


def _referenced(item: Located, element: str,
                by_url: dict[str, Located]) -> tuple[set[Hashable], str, str] | None:
    """The names of the patient ``item.<element>`` refers to, a label, and the part of the reference
    that names it (``reference`` or ``identifier``); None when it names no patient."""
    reference = item.resource.get(element)
    if not isinstance(reference, dict):
        return None
    kind = reference.get("type")
    if isinstance(kind, str) and kind not in ("Patient", "http://hl7.org/fhir/StructureDefinition/Patient"):
        return None
    text = reference.get("reference")
    if isinstance(text, str) and text:
        target = by_url.get(text)
        if target is not None:
            return (_patient_names(target), _label(target), "reference") if target.type == "Patient" else None
        if text.startswith("#"):
            return {("contained", item.path, text)}, f"the contained {text} of {item.reference}", "reference"
        if match := _PATIENT_URL.search(text):
            return {("id", match.group(1))}, f"Patient/{match.group(1)}", "reference"
        if _OTHER_TYPE.search(text):
            return None  # Group/…, Location/…: not a patient
        return {("url", text)}, text, "reference"  # urn:uuid:… not in the request: a patient named only here
    if (name := _identifier(reference.get("identifier"))) is not None:
        return {name}, f"the patient with identifier {name[1]}|{name[2]}", "identifier"
    return None


def _identifier(identifier: Any) -> tuple[str, str, str] | None:
    if not isinstance(identifier, dict):
        return None
    system, value = identifier.get("system"), identifier.get("value")
    if isinstance(value, str) and value:
        return "identifier", system if isinstance(system, str) else "", value
    return None


def _label(item: Located) -> str:
    rid = item.resource.get("id")
    return f"Patient/{rid}" if isinstance(rid, str) and rid else f"the Patient at {item.path}"


class _Names:
    """Union-find over patients' names: names seen together are one patient."""

    def __init__(self) -> None:
        self._parent: dict[Hashable, Hashable] = {}
        self._seen: list[tuple[Hashable, str, str]] = []  # a name of each group joined, its label and place

    def _root(self, name: Hashable) -> Hashable:
        self._parent.setdefault(name, name)
        while self._parent[name] != name:
            self._parent[name] = self._parent[self._parent[name]]
            name = self._parent[name]
        return name

    def join(self, names: set[Hashable], label: str, where: str) -> None:
        first, *others = sorted(names, key=repr)
        for other in others:
            self._parent[self._root(other)] = self._root(first)
        self._root(first)
        self._seen.append((first, label, where))

    def patients(self) -> list[tuple[str, str]]:
        """Each patient (label, place where first named), in the order first named."""
        found: dict[Hashable, tuple[str, str]] = {}
        for name, label, where in self._seen:
            found.setdefault(self._root(name), (label, where))
        return list(found.values())
