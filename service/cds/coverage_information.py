"""The Da Vinci CRD answer: a ``systemActions`` update that adds the ``ext-coverage-information``
extension to a draft order, and nothing else.

The engine reports criteria and never decides coverage, so the only values it sends are
``covered = conditional`` and ``pa-needed = conditional`` (the payer decides), ``info-needed =
OTH`` with the reason in words, and, on ``order-sign`` when some criterion is not documented, a
request for clinical documentation with the prior-authorization request (``doc-needed =
clinical``, ``doc-purpose = withpa``, the evaluation's questionnaire). A technical failure, for
CRD 2.2 clients only, is ``indeterminate`` with the reason ``technical``. Never ``covered``,
``not-covered``, ``no-auth`` or ``satisfied``. Each answer passes the invariants of CRD 2.0.1,
2.1.0 and 2.2 (tests/test_cds_hooks.py checks them with FHIRPath).
"""

from __future__ import annotations

import copy
import datetime
from typing import Any

EXTENSION_URL = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
REASON_SYSTEM = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/coverageAssertionReasons"


def _sub(url: str, kind: str, value: Any) -> dict[str, Any]:
    return {"url": url, kind: value}


def reason_text(result: dict[str, Any]) -> str:
    """One sentence: what the record shows against the criteria, and who decides."""
    summary = result["summary"]
    not_met = [c["title"] for c in result["criteria"] if c["status"] == "not_met"]
    undocumented = [c["title"] for c in result["criteria"] if c["status"] == "insufficient_information"]
    parts = [f"{summary['met']} of {summary['total']} criteria of {result['policy']['title']} "
             f"(version {result['policy']['version']}) are met in the record"]
    if not_met:
        parts.append(f"not met: {', '.join(not_met)}")
    if undocumented:
        parts.append(f"not documented: {', '.join(undocumented)}")
    return "; ".join(parts) + "; coverage and prior authorization are decided by the payer, not by this check."


def criteria_information(
    result: dict[str, Any],
    coverage_reference: str,
    *,
    ask_for_documentation: bool,
    questionnaire_url: str,
    today: datetime.date,
) -> dict[str, Any]:
    """The coverage-information extension for one evaluated order."""
    parts = [
        _sub("coverage", "valueReference", {"reference": coverage_reference}),
        _sub("covered", "valueCode", "conditional"),
        _sub("pa-needed", "valueCode", "conditional"),
    ]
    if ask_for_documentation and result["summary"]["insufficient_information"]:
        parts += [_sub("doc-needed", "valueCode", "clinical"), _sub("doc-purpose", "valueCode", "withpa")]
    parts += [
        _sub("info-needed", "valueCode", "OTH"),
        _sub("reason", "valueCodeableConcept", {"text": reason_text(result)}),
    ]
    if ask_for_documentation and result["summary"]["insufficient_information"]:
        parts.append(_sub("questionnaire", "valueCanonical", questionnaire_url))
    parts += [
        _sub("date", "valueDate", today.isoformat()),
        _sub("coverage-assertion-id", "valueString", result["evaluation_id"]),
    ]
    return {"url": EXTENSION_URL, "extension": parts}


def technical_information(
    coverage_reference: str, message: str, assertion_id: str, today: datetime.date
) -> dict[str, Any]:
    """CRD 2.2's answer when the criteria could not be checked for a technical reason."""
    return {
        "url": EXTENSION_URL,
        "extension": [
            _sub("coverage", "valueReference", {"reference": coverage_reference}),
            _sub("covered", "valueCode", "indeterminate"),
            _sub("pa-needed", "valueCode", "indeterminate"),
            _sub("reason", "valueCodeableConcept", {
                "coding": [{"system": REASON_SYSTEM, "code": "technical"}],
                "text": f"The criteria could not be checked: {message}",
            }),
            _sub("date", "valueDate", today.isoformat()),
            _sub("coverage-assertion-id", "valueString", assertion_id),
        ],
    }


def update_action(order: dict[str, Any], information: dict[str, Any]) -> dict[str, Any]:
    """The system action: the order as drafted, with this coverage information added (replacing
    one the order already carried for the same Coverage)."""
    updated = copy.deepcopy(order)
    coverage = _coverage_of(information)
    kept = [e for e in updated.get("extension", [])
            if not (e.get("url") == EXTENSION_URL and _coverage_of(e) == coverage)]
    updated["extension"] = [*kept, information]
    return {
        "type": "update",
        "description": f"Added coverage information (criteria check) to {order['resourceType']}/{order.get('id', '')}",
        "resource": updated,
    }


def _coverage_of(extension: dict[str, Any]) -> Any:
    for part in extension.get("extension", []):
        if isinstance(part, dict) and part.get("url") == "coverage":
            return part.get("valueReference")
    return None
