"""The invariants of Da Vinci CRD's ext-coverage-information, as FHIRPath, for CRD 2.0.1, 2.1.0 and
2.2, run by a real FHIRPath engine (fhirpathpy, R4 model) on each extension the service emits.

Sources: 2.0.1 from the package's StructureDefinition (shared/fhir-examples/crd-pkg-2.0.1_
StructureDefinition-ext-coverage-information.json); 2.1.0 and 2.2 as shared/fhir-crd.md §2.4 and
HL7/davinci-crd input/fsh/extensions/CoverageInformation.fsh give them. Adjustments, each stricter
or equal, never looser:
- fhirpathpy refuses a non-boolean collection as an operand of ``implies``/``and`` (FHIRPath's
  singleton evaluation would read one item as true): those operands get ``.exists()``.
- q7's ``memberOf`` (not supported by fhirpathpy) is dropped: every reason must have text.
- 2.1.0's q6 compares to 'Other' (a bug in the published expression); it is checked with 'OTH'.
Beside the invariants, each version's logical model (sub-extensions allowed, cardinalities, value
types, required value sets, the ``detail`` shape: 2.2 alone has ``category``) and CRD 2.2.1's
rule that ``info-needed = OTH`` comes with a ``detail``.
"""

from __future__ import annotations

import re
from typing import Any

import fhirpathpy
from fhirpathpy.models import models

EXTENSION_URL = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"

_Q6 = "extension.where(url = 'info-needed' and value = 'OTH').exists() implies extension.where(url = 'reason').exists()"
_Q7 = "extension.where(url = 'reason').empty() or extension.where(url = 'reason').all(value.text.exists())"
_Q5 = ("extension.where(url = 'pa-needed' and value = 'satisfied').exists() = "
       "extension.where(url = 'satisfied-pa-id').exists()")

INVARIANTS: dict[str, dict[str, str]] = {
    "2.0.1": {
        "q1": "extension.where(url='questionnaire' or url='response').exists() implies "
              "(extension.where(url = 'doc-needed').exists() and extension.where(url = 'doc-needed').all(value != 'no-doc'))",
        "q2": "extension.where(url = 'covered' and value != 'not-covered').exists() implies "
              "extension.where(url = 'pa-needed').exists()",
        "q3": "extension.where(url = 'info-needed').exists() implies extension.where((url = 'covered' or "
              "url = 'pa-needed' or url = 'doc-needed') and value = 'conditional').count() >= 1",
        "q4": "(extension.where(url = 'pa-needed' and value = 'satisfied').exists() and "
              "extension.where(url = 'doc-purpose').exists()) implies extension.where(url = 'doc-purpose').all(value != 'PA')",
        "q5": _Q5,
    },
    "2.1.0": {
        "q1": "extension.where(url='questionnaire').exists() implies extension.where(url = 'doc-needed').exists()",
        "q2": "extension.where(url = 'covered' and value = 'not-covered').exists() implies "
              "extension.where(url = 'pa-needed').exists().not()",
        "q3": "extension.where((url = 'covered' or url = 'pa-needed' or url = 'doc-needed') and "
              "value = 'conditional').count() >= 1 implies extension.where(url = 'info-needed').exists()",
        "q4": "(extension.where(url = 'pa-needed' and value = 'satisfied').exists() and "
              "extension.where(url = 'doc-purpose').exists()) implies extension.where(url = 'doc-purpose').all(value != 'withpa')",
        "q5": _Q5,
        "q6": _Q6,
        "q7": _Q7,
    },
    "2.2": {
        "q1": "extension.where(url='questionnaire').exists() implies extension.where(url = 'doc-needed').exists()",
        "q2": "extension.where(url = 'covered' and value = 'not-covered').exists() implies "
              "extension.where(url = 'pa-needed').exists().not()",
        "q3": "extension.where((url = 'covered' or url = 'pa-needed' or url = 'doc-needed') and "
              "value = 'conditional').count() >= 1 implies extension.where(url = 'info-needed').exists()",
        "q4": "(extension.where(url = 'pa-needed' and (value = 'satisfied' or value = 'no-auth' or "
              "value = 'not-covered')).exists() and extension.where(url = 'doc-purpose').exists()) implies "
              "extension.where(url = 'doc-purpose').all(value != 'withpa')",
        "q5": _Q5,
        "q6": _Q6,
        "q7": _Q7,
        "q8": "extension.where(url = 'doc-purpose' and value != 'conditional').exists() implies "
              "extension.where(url = 'reason').exists()",
        "q9": "extension.where((url = 'covered' or url = 'pa-needed' or url = 'doc-needed') and "
              "value = 'indeterminate').exists() implies extension.where(url = 'reason').exists()",
    },
}

# CRD 2.2.1 asks that info-needed = OTH come with a detail explaining what is needed.
INVARIANTS["2.2"]["oth-detail"] = ("extension.where(url = 'info-needed' and value = 'OTH').exists() implies "
                                   "extension.where(url = 'detail').exists()")

# The logical model of each version (CoverageInformation.fsh, CoverageInformationValuesets.fsh of
# CRD 2.0.1, 2.1.0 and 2.2.1; shared/fhir-crd.md §2.3): sub-extension -> (min, max, value type,
# required value set or None). Bindings checked are the required ones.
_COVERED = {"covered", "not-covered", "conditional"}
_PA = {"no-auth", "auth-needed", "performpa", "satisfied", "conditional"}
_DOC_PURPOSE = {"withpa", "withclaim", "withorder", "retain-doc", "OTH"}
_INFO = {"performer", "location", "timeframe", "contract-window", "OTH"}
_MANY = 10**9
_COMMON = {
    "coverage": (1, 1, "valueReference", None),
    "covered": (1, 1, "valueCode", _COVERED),
    "pa-needed": (0, 1, "valueCode", _PA),
    "doc-purpose": (0, _MANY, "valueCode", _DOC_PURPOSE),
    "info-needed": (0, _MANY, "valueCode", _INFO),
    "billingCode": (0, _MANY, "valueCoding", None),
    "reason": (0, _MANY, "valueCodeableConcept", None),
    "detail": (0, _MANY, None, None),
    "dependency": (0, _MANY, "valueReference", None),
    "questionnaire": (0, _MANY, "valueCanonical", None),
    "date": (1, 1, "valueDate", None),
    "coverage-assertion-id": (1, 1, "valueString", None),
    "satisfied-pa-id": (0, 1, "valueString", None),
}
MODEL: dict[str, dict[str, tuple[int, int, str | None, set[str] | None]]] = {
    "2.0.1": {**_COMMON, "doc-needed": (0, 1, "valueCode", {"no-doc", "clinical", "admin", "both", "conditional"}),
              "response": (0, _MANY, "valueReference", None), "contact": (0, _MANY, "valueContactPoint", None)},
    "2.1.0": {**_COMMON, "doc-needed": (0, _MANY, "valueCode", {"clinical", "admin", "patient", "conditional"}),
              "contact": (0, _MANY, "valueContactPoint", None), "expiry-date": (0, 1, "valueDate", None)},
    "2.2": {**_COMMON, "covered": (1, 1, "valueCode", _COVERED | {"indeterminate"}),
            "pa-needed": (0, 1, "valueCode", _PA | {"indeterminate"}),
            "doc-needed": (0, _MANY, "valueCode", {"clinical", "admin", "patient", "conditional", "indeterminate"}),
            "info-needed": (0, _MANY, "valueCode", _INFO | {"detail-code"}),
            "contact": (0, _MANY, "valueContactDetail", None), "expiry-date": (0, 1, "valueDate", None)},
}
_DETAIL_VALUES = {"valueBoolean", "valueString", "valueQuantity", "valuePeriod"}
_CATEGORIES = {"cat-limitation", "cat-decisional", "cat-other"}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def answered_versions(requested: str) -> list[str]:
    """The versions an answer is held to: 2.2 when asked for, else 2.0.1 and 2.1.0 (the service
    answers clients that ask for no version in the shape both accept)."""
    return ["2.2"] if requested.startswith("2.2") else ["2.0.1", "2.1.0"]


def violations(extension: dict[str, Any], version: str) -> list[str]:
    """What ``extension`` (one coverage-information) breaks of ``version``: its invariants
    (FHIRPath) and its logical model (sub-extensions, cardinalities, types, required bindings)."""
    broken = [name for name, expression in INVARIANTS[version].items()
              if fhirpathpy.evaluate(extension, expression, {}, models["r4"]) != [True]]
    return broken + _model_violations(extension, MODEL[version], version)


def _model_violations(extension: dict[str, Any], model: dict, version: str) -> list[str]:
    broken = []
    if extension.get("url") != EXTENSION_URL or set(extension) - {"url", "extension"}:
        broken.append("url / no value of its own")
    parts = extension.get("extension", [])
    for part in parts:
        url = part.get("url")
        if url not in model:
            broken.append(f"{url}: not a sub-extension of {version}")
            continue
        _, _, kind, codes = model[url]
        if url == "detail":
            broken += _detail_violations(part, version)
            continue
        values_given = [k for k in part if k.startswith("value")]
        if values_given != [kind] or "extension" in part:
            broken.append(f"{url}: one {kind} expected, got {values_given}")
        elif codes is not None and part[kind] not in codes:
            broken.append(f"{url}: {part[kind]!r} not in the required value set of {version}")
        elif kind == "valueDate" and not _DATE.fullmatch(part[kind]):
            broken.append(f"{url}: not a date")
    for url, (low, high, _, _) in model.items():
        count = sum(1 for p in parts if p.get("url") == url)
        if not low <= count <= high:
            broken.append(f"{url} {low}..{'*' if high == _MANY else high}: {count}")
    return broken


def _detail_violations(detail: dict[str, Any], version: str) -> list[str]:
    inner = {p.get("url"): p for p in detail.get("extension", [])}
    allowed = {"code", "value", "qualification"} | ({"category"} if version == "2.2" else set())
    broken = [f"detail.{url}: not defined in {version}" for url in inner if url not in allowed]
    if len(inner) != len(detail.get("extension", [])) or any(k.startswith("value") for k in detail):
        broken.append("detail: repeated sub-extensions or a value of its own")
    if "valueCodeableConcept" not in inner.get("code", {}):
        broken.append("detail.code 1..1 CodeableConcept")
    value_types = _DETAIL_VALUES | ({"valueUrl"} if version == "2.2" else set())
    if not value_types & set(inner.get("value", {})):
        broken.append("detail.value 1..1")
    if "qualification" in inner and "valueString" not in inner["qualification"]:
        broken.append("detail.qualification string")
    if version == "2.2" and inner.get("category", {}).get("valueCode") not in _CATEGORIES:
        broken.append("detail.category 1..1 (2.2)")
    return broken


def assertion_ids_consistent(resource: dict[str, Any]) -> bool:
    """Inferno's check of a resource's coverage-informations: the same Coverage, the same
    coverage-assertion-id; different Coverages, different ids."""
    by_coverage: dict[str, set[str]] = {}
    for information in coverage_informations(resource):
        [coverage] = values(information, "coverage") or [{}]
        by_coverage.setdefault(str(coverage.get("reference")), set()).update(values(information, "coverage-assertion-id"))
    ids = [i for group in by_coverage.values() for i in group]
    return all(len(group) == 1 for group in by_coverage.values()) and len(ids) == len(set(ids))


def coverage_informations(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in resource.get("extension", []) if e.get("url") == EXTENSION_URL]


def values(extension: dict[str, Any], url: str) -> list[Any]:
    found = []
    for part in extension["extension"]:
        if part["url"] == url:
            found += [v for k, v in part.items() if k.startswith("value")]
    return found
