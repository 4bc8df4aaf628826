"""OperationOutcome: how a FHIR client hears about bad input (422, or 400 for unreadable JSON).

Every issue names the offending element by its FHIRPath ``expression`` (``Bundle.entry[2].resource
.value.ofType(Quantity).code``), so an intake engineer can find it in what they sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

FHIR_JSON = "application/fhir+json"
MAX_ISSUES = 100  # like the JSON error body: at most 100 issues, and the count of all of them


@dataclass(frozen=True)
class Issue:
    """One problem: ``code`` from the R4 issue-type value set (invalid, structure, required,
    value, not-supported, processing, ...), ``expression`` a FHIRPath, or None for the whole request."""

    code: str
    diagnostics: str
    expression: str | None = None
    severity: str = "error"


def operation_outcome(issues: Iterable[Issue | tuple[str, str, str | None, str]]) -> dict[str, Any]:
    """The OperationOutcome resource (R4) holding ``issues``: Issues, or tuples
    ``(severity, code, expression, diagnostics)``."""
    issues = [i if isinstance(i, Issue) else Issue(code=i[1], diagnostics=i[3], expression=i[2], severity=i[0])
              for i in issues]
    shown = issues[:MAX_ISSUES]
    entries = []
    for issue in shown:
        entry: dict[str, Any] = {"severity": issue.severity, "code": issue.code, "diagnostics": issue.diagnostics}
        if issue.expression:
            entry["expression"] = [issue.expression]
        entries.append(entry)
    if len(issues) > len(shown):
        entries.append({"severity": "information", "code": "too-costly",
                        "diagnostics": f"{len(issues)} issues in all; the first {len(shown)} are listed."})
    return {"resourceType": "OperationOutcome", "issue": entries}


class OperationOutcomeError(Exception):
    """A FHIR request that cannot be evaluated; answered with an OperationOutcome and ``status``."""

    def __init__(self, issues: Iterable[Issue], status: int = 422):
        self.issues = list(issues)
        self.status = status
        super().__init__("; ".join(f"{i.expression or 'request'}: {i.diagnostics}" for i in self.issues))

    @classmethod
    def one(cls, code: str, diagnostics: str, expression: str | None = None, status: int = 422) -> "OperationOutcomeError":
        return cls([Issue(code, diagnostics, expression)], status)

    @classmethod
    def from_invalid_input(cls, error: Any, expressions: dict[str, str] | None = None) -> "OperationOutcomeError":
        """A client error of the plain-JSON kind (service.errors.InvalidInput) as an OperationOutcome:
        one issue a listed field error, each at the FHIR element the field was read from when
        known, and the total when more errors were found than listed."""
        expressions = expressions or {}
        issues = [Issue("invalid" if e["type"] != "missing" else "required", f"{e['field']}: {e['message']}",
                        expressions.get(e["field"])) for e in error.errors]
        if error.count > len(error.errors):
            issues.append(Issue("too-costly", f"{error.count} errors in all; the first {len(error.errors)} are listed.",
                                severity="information"))
        return cls(issues)

    def to_resource(self) -> dict[str, Any]:
        return operation_outcome(self.issues)
