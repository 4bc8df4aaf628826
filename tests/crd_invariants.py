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
"""

from __future__ import annotations

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

# Cardinalities every version shares (1..1 coverage, covered, date, coverage-assertion-id).
REQUIRED_ONCE = ("coverage", "covered", "date", "coverage-assertion-id")


def violations(extension: dict[str, Any], version: str) -> list[str]:
    """The invariants of ``version`` that ``extension`` (one coverage-information) breaks."""
    broken = [name for name, expression in INVARIANTS[version].items()
              if fhirpathpy.evaluate(extension, expression, {}, models["r4"]) != [True]]
    counts = {url: sum(1 for e in extension["extension"] if e["url"] == url) for url in REQUIRED_ONCE}
    broken += [f"{url} 1..1" for url, count in counts.items() if count != 1]
    return broken


def coverage_informations(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in resource.get("extension", []) if e.get("url") == EXTENSION_URL]


def values(extension: dict[str, Any], url: str) -> list[Any]:
    found = []
    for part in extension["extension"]:
        if part["url"] == url:
            found += [v for k, v in part.items() if k.startswith("value")]
    return found
