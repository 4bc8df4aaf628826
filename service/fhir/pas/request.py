"""A PAS request Bundle (``Claim/$submit``, ``Claim/$inquire``), checked and read.

Checked as the PAS request Bundle profiles and the Inferno PAS kit check it (shared/dtr-pas.md
§3.2, §3.8): a ``collection`` with an identifier, a timestamp and at least one entry, each entry
with a ``fullUrl`` and a resource and no ``request``/``response``/``search``; the Claim first,
``use`` = ``preauthorization``, ``status`` = ``active``, an identifier value, ``patient`` and
``insurer``, at least one item with its ``sequence`` and ``productOrService``; the Claim valid R4;
every resource the Claim references present once, following references through the resources
reached (spec-13). Anything else is one OperationOutcome, HTTP 400, before anything is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.fhir.outcome import Issue, OperationOutcomeError
from service.fhir.parse import bundle_entries, validation_issues
from service.fhir.pas import constants as pas
from service.fhir.pas.bundle import BundleIndex, Entry
from service.fhir.readers import codings, moment

MALFORMED = 400


@dataclass(frozen=True)
class Item:
    """A Claim item: its sequence, its codes (``(system, code)``), where it is, its service date."""

    sequence: int
    codes: tuple[tuple[str, str], ...]
    path: str
    serviced: str | None  # YYYY-MM-DD: servicedDate, or the start of servicedPeriod
    resource: dict[str, Any]


@dataclass(frozen=True)
class PasRequest:
    """A checked PAS request: the Claim's entry, the entries it reaches, and what is read from it."""

    bundle: dict[str, Any]
    index: BundleIndex
    claim: Entry
    reached: tuple[Entry, ...]
    external_id: str
    external_id_path: str
    version: str
    priority: str  # "standard" | "expedited"
    items: tuple[Item, ...]

    @property
    def answers(self) -> pas.Version:
        return pas.VERSIONS[self.version]

    def target(self, element: str) -> Entry | None:
        """The entry a top-level reference of the Claim (``patient``, ``insurer``, ``provider``) names."""
        reference = self.claim.resource.get(element)
        text = reference.get("reference") if isinstance(reference, dict) else None
        found = self.index.resolve(text, self.claim) if isinstance(text, str) else []
        return found[0] if len(found) == 1 else None


def read_request(bundle: Any, *, operation: str = "submit") -> PasRequest:
    """The checked request; OperationOutcomeError (400) listing every problem found."""
    try:
        bundle_entries(bundle)  # a Bundle, valid R4 as an envelope, its entries objects
    except OperationOutcomeError as error:
        raise OperationOutcomeError(error.issues, MALFORMED) from None
    issues = _envelope_issues(bundle)
    index = BundleIndex.of(bundle)
    first = index.entries[0] if index.entries and index.entries[0].index == 0 else None
    if first is None or first.type != "Claim":
        issues.append(Issue("structure", "The first entry of a PAS request Bundle must be a Claim.",
                            "Bundle.entry[0].resource"))
        raise OperationOutcomeError(issues, MALFORMED)
    issues += validation_issues(first.located)
    issues += _claim_issues(first, operation)
    # spec-65/66: a Claim update's parent Claim is in the Bundle, but not the grandparent: the
    # primary Claim's `related` is followed, another Claim's is not (as the Inferno kit does).
    reached, missing = index.closure(first)
    issues += missing
    if issues:
        raise OperationOutcomeError(issues, MALFORMED)
    claim = first.resource
    identifier, identifier_path = _identifier(claim, first.path)
    return PasRequest(
        bundle=bundle,
        index=index,
        claim=first,
        reached=tuple(reached),
        external_id=identifier,
        external_id_path=identifier_path,
        version=pas.version_of((claim.get("meta") or {}).get("profile")),
        priority=priority_of(claim),
        items=tuple(_items(claim, first.path)),
    )


def _envelope_issues(bundle: dict[str, Any]) -> list[Issue]:
    issues = []
    if bundle.get("type") != "collection":
        issues.append(Issue("value", "A PAS request Bundle is of type collection.", "Bundle.type"))
    identifier = bundle.get("identifier")
    if not isinstance(identifier, dict) or not identifier.get("value"):
        issues.append(Issue("required", "A PAS request Bundle has an identifier.", "Bundle.identifier"))
    if not bundle.get("timestamp"):
        issues.append(Issue("required", "A PAS request Bundle has a timestamp.", "Bundle.timestamp"))
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        issues.append(Issue("required", "A PAS request Bundle holds at least one entry, the Claim first.",
                            "Bundle.entry"))
        return issues
    for position, entry in enumerate(entries):
        path = f"Bundle.entry[{position}]"
        if not isinstance(entry, dict):
            continue  # bundle_entries has refused it already
        if not isinstance(entry.get("fullUrl"), str) or not entry["fullUrl"]:
            issues.append(Issue("required", "Every entry of a PAS request Bundle has a fullUrl.", f"{path}.fullUrl"))
        if not isinstance(entry.get("resource"), dict):
            issues.append(Issue("required", "Every entry of a PAS request Bundle holds a resource.",
                                f"{path}.resource"))
        for name in ("request", "response", "search"):
            if name in entry:
                issues.append(Issue("structure", f"A PAS request Bundle's entries have no {name}.", f"{path}.{name}"))
    return issues


def _claim_issues(entry: Entry, operation: str) -> list[Issue]:
    claim, path = entry.resource, entry.path
    issues = []
    if claim.get("use") != "preauthorization":
        issues.append(Issue("value", "The Claim of a PAS request has use = preauthorization.", f"{path}.use"))
    if operation == "submit" and claim.get("status") != "active":
        issues.append(Issue("value", "The Claim of a PAS request has status = active.", f"{path}.status"))
    if _identifier(claim, path)[0] == "":
        issues.append(Issue("required", "The Claim has an identifier with a value (the request's reference).",
                            f"{path}.identifier"))
    for element in ("patient", "insurer"):
        reference = claim.get(element)
        if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
            issues.append(Issue("required", f"The Claim references its {element}.", f"{path}.{element}"))
    items = claim.get("item")
    if operation == "submit" and (not isinstance(items, list) or not items):
        issues.append(Issue("required", "The Claim lists at least one item.", f"{path}.item"))
    for position, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue  # the R4 validation has named it
        if not isinstance(item.get("sequence"), int):
            issues.append(Issue("required", "Each item has a sequence.", f"{path}.item[{position}].sequence"))
        if operation == "submit" and not list(codings(item.get("productOrService"))):
            issues.append(Issue("required", "Each item has a productOrService coding.",
                                f"{path}.item[{position}].productOrService"))
    return issues


def _identifier(claim: dict[str, Any], path: str) -> tuple[str, str]:
    identifiers = claim.get("identifier")
    for position, identifier in enumerate(identifiers if isinstance(identifiers, list) else []):
        value = identifier.get("value") if isinstance(identifier, dict) else None
        if isinstance(value, str) and value:
            return value, f"{path}.identifier[{position}].value"
    return "", f"{path}.identifier"


def _items(claim: dict[str, Any], path: str) -> list[Item]:
    found = []
    for position, item in enumerate(claim.get("item") or []):
        if not isinstance(item, dict) or not isinstance(item.get("sequence"), int):
            continue
        codes = tuple((c["system"], c["code"]) for _, c in codings(item.get("productOrService"))
                      if isinstance(c.get("system"), str) and isinstance(c.get("code"), str))
        found.append(Item(item["sequence"], codes, f"{path}.item[{position}]", _serviced(item), item))
    return found


def _serviced(item: dict[str, Any]) -> str | None:
    period = item.get("servicedPeriod")
    for value in (item.get("servicedDate"), period.get("start") if isinstance(period, dict) else None):
        parsed = moment(value)
        if parsed is not None:
            return parsed[0].isoformat()
    return None


def priority_of(claim: dict[str, Any]) -> str:
    """``expedited`` when the Claim or one of its items is at level of service X12 1338 ``U``
    (urgent), or the Claim's priority is stat or urgent; ``standard`` otherwise."""
    holders = [claim, *(i for i in claim.get("item") or [] if isinstance(i, dict))]
    for holder in holders:
        for extension in holder.get("extension") or []:
            if isinstance(extension, dict) and extension.get("url") == pas.LEVEL_OF_SERVICE:
                for _, coding in codings(extension.get("valueCodeableConcept")):
                    if coding.get("system") in pas.X12_1338_SYSTEMS and coding.get("code") == pas.EXPEDITED_LEVEL_OF_SERVICE:
                        return "expedited"
    for _, coding in codings(claim.get("priority")):
        if coding.get("system") in (pas.PROCESS_PRIORITY, None) and coding.get("code") in pas.EXPEDITED_PRIORITIES:
            return "expedited"
    return "standard"
