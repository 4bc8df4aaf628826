"""The Da Vinci CRD answer: a ``systemActions`` update that adds the ``ext-coverage-information``
extension to a draft order, and nothing else.

The engine reports criteria and never decides coverage, so the only values it sends are
``covered = conditional`` and ``pa-needed = conditional`` (the payer decides), ``info-needed =
OTH`` with the reason in words and a ``detail`` that says what is needed, and, on ``order-sign``
when some criterion is not documented, a request for clinical documentation with the
prior-authorization request (``doc-needed = clinical``, ``doc-purpose = withpa``, the
evaluation's questionnaire). A technical failure, for CRD 2.2 clients only, is ``indeterminate``
with the reason ``technical`` of CRD 2.2's ``CodeSystem/temp``. Never ``covered``,
``not-covered``, ``no-auth`` or ``satisfied``.

The shape follows the CRD version the client asked for (``davinci-crd.requestedVersion``): CRD
2.2 requires a ``category`` in each ``detail``, which CRD 2.0.1 and 2.1 do not define (the HL7
validator refuses an unknown sub-extension), so clients that ask for no version get the 2.1
shape, which 2.0.1 accepts too. Each answer keeps the invariants of the versions it is for
(tests/crd_invariants.py checks them with FHIRPath).
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

EXTENSION_URL = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
# CRD's own code system for the codes it has not yet moved to terminology.hl7.org: 2.2's
# ``technical`` reason and the ``instructions`` detail code (2.0.1, 2.1 and 2.2 all list it there).
CRD_TEMP = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp"
# Parts that change with every evaluation even when nothing else does (CRD resp-35: no new update
# unless something changed).
_EVERY_TIME = {"coverage-assertion-id", "date", "questionnaire"}


def _sub(url: str, kind: str, value: Any) -> dict[str, Any]:
    return {"url": url, kind: value}


def reason_text(result: dict[str, Any], not_read: list[str]) -> str:
    """One sentence: what the record shows against the criteria, and who decides; then what
    this call did not read (over the service's limits), if anything."""
    summary = result["summary"]
    not_met = [c["title"] for c in result["criteria"] if c["status"] == "not_met"]
    undocumented = [c["title"] for c in result["criteria"] if c["status"] == "insufficient_information"]
    parts = [f"{summary['met']} of {summary['total']} criteria of {result['policy']['title']} "
             f"(version {result['policy']['version']}) are met in the record"]
    if not_met:
        parts.append(f"not met: {', '.join(not_met)}")
    if undocumented:
        parts.append(f"not documented: {', '.join(undocumented)}")
    text = "; ".join(parts) + "; coverage and prior authorization are decided by the payer, not by this check."
    if not_read:
        text += " Not read, over this service's limits: " + "; ".join(not_read) + "."
    return text


def _needed(result: dict[str, Any], ask_for_documentation: bool) -> str:
    """What ``info-needed = OTH`` stands for, in words (the detail CRD 2.2.1 asks for)."""
    undocumented = [c["title"] for c in result["criteria"] if c["status"] == "insufficient_information"]
    if undocumented and ask_for_documentation:
        return ("Documentation the record does not hold, for the payer's prior-authorization review: "
                + ", ".join(undocumented) + " (the questionnaire asks for it).")
    if undocumented:
        return "Documentation the record does not hold, for the payer's review: " + ", ".join(undocumented) + "."
    return "The payer's review: this check reports the policy's criteria; it does not decide coverage."


def _detail(text: str, version: tuple[int, ...]) -> dict[str, Any]:
    parts = [
        _sub("code", "valueCodeableConcept", {"coding": [{"system": CRD_TEMP, "code": "instructions"}]}),
        _sub("value", "valueString", text),
    ]
    if version >= (2, 2):
        parts.insert(0, _sub("category", "valueCode", "cat-other"))
    return {"url": "detail", "extension": parts}


def criteria_information(
    result: dict[str, Any],
    coverage_reference: str,
    *,
    ask_for_documentation: bool,
    questionnaire_url: str,
    version: tuple[int, ...],
    not_read: list[str],
) -> dict[str, Any]:
    """The coverage-information extension for one evaluated order, dated as the evaluation."""
    asks = ask_for_documentation and bool(result["summary"]["insufficient_information"])
    parts = [
        _sub("coverage", "valueReference", {"reference": coverage_reference}),
        _sub("covered", "valueCode", "conditional"),
        _sub("pa-needed", "valueCode", "conditional"),
    ]
    if asks:
        parts += [_sub("doc-needed", "valueCode", "clinical"), _sub("doc-purpose", "valueCode", "withpa")]
    parts += [
        _sub("info-needed", "valueCode", "OTH"),
        _sub("reason", "valueCodeableConcept", {"text": reason_text(result, not_read)}),
        _detail(_needed(result, asks), version),
    ]
    if asks:
        parts.append(_sub("questionnaire", "valueCanonical", questionnaire_url))
    parts += [
        _sub("date", "valueDate", result["evaluated_at"][:10]),
        _sub("coverage-assertion-id", "valueString", result["evaluation_id"]),
    ]
    return {"url": EXTENSION_URL, "extension": parts}


def technical_information(
    coverage_reference: str, message: str, assertion_id: str, today: datetime.date
) -> dict[str, Any]:
    """CRD 2.2's answer when the criteria could not be checked for a technical reason (resp-43)."""
    return {
        "url": EXTENSION_URL,
        "extension": [
            _sub("coverage", "valueReference", {"reference": coverage_reference}),
            _sub("covered", "valueCode", "indeterminate"),
            _sub("pa-needed", "valueCode", "indeterminate"),
            _sub("reason", "valueCodeableConcept", {
                "coding": [{"system": CRD_TEMP, "code": "technical"}],
                "text": f"The criteria could not be checked: {message}",
            }),
            _sub("date", "valueDate", today.isoformat()),
            _sub("coverage-assertion-id", "valueString", assertion_id),
        ],
    }


def carried(order: dict[str, Any], coverage_reference: str) -> dict[str, Any] | None:
    """The coverage information the order already carries for this Coverage, if any."""
    for extension in order.get("extension") or []:
        if (isinstance(extension, dict) and extension.get("url") == EXTENSION_URL
                and _coverage_of(extension) == {"reference": coverage_reference}):
            return extension
    return None


def same_news(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """True when ``new`` says what ``old`` said: they differ at most in what changes with every
    evaluation (its id, its date, the questionnaire's URL)."""
    if old is None or not isinstance(old.get("extension"), list):
        return False

    def news(extension: dict[str, Any]) -> list[Any]:
        return sorted(json.dumps(part, sort_keys=True) for part in extension["extension"]
                      if not (isinstance(part, dict) and part.get("url") in _EVERY_TIME))

    return news(old) == news(new)


def update_action(order: dict[str, Any], information: dict[str, Any]) -> dict[str, Any]:
    """The system action: the order as drafted, with this coverage information added (replacing
    one the order already carried for the same Coverage)."""
    updated = copy.deepcopy(order)
    coverage = _coverage_of(information)
    kept = [e for e in updated.get("extension", [])
            if not (isinstance(e, dict) and e.get("url") == EXTENSION_URL and _coverage_of(e) == coverage)]
    updated["extension"] = [*kept, information]
    return {
        "type": "update",
        "description": f"Added coverage information (criteria check) to {order['resourceType']}/{order.get('id', '')}",
        "resource": updated,
    }


def _coverage_of(extension: dict[str, Any]) -> Any:
    for part in extension.get("extension", []) if isinstance(extension.get("extension"), list) else []:
        if isinstance(part, dict) and part.get("url") == "coverage":
            return part.get("valueReference")
    return None
