"""Turn what durable-rules decided into the result a reviewer reads (shared/contract.md).

The engine has already decided the truth of every node of every rule; this module only reads
those truths back: it names the comparisons that settle each answer (the reason), the values read
(the evidence), and the missing fields the answer still depends on. It never compares values.
"""

from __future__ import annotations

from typing import Any

from service.case import FIELDS, Case
from service.rules import OPERATORS, AnyOf, Comparison, Expr, Not, PolicyVersion, Rule

NOTICE = "These findings support a reviewer's determination; they are not a coverage decision."
CRITERION_STATUS = {True: "met", False: "not_met", None: "insufficient_information"}
FLAG_STATUS = {True: "present", False: "absent", None: "unknown"}
_PREFIX = {True: "Met", False: "Not met", None: "Insufficient information"}
_FLAG_PREFIX = {True: "Present", False: "Absent", None: "Unknown"}


def _plain(value: Any) -> Any:
    """7.0 -> 7, so evidence shows numbers as intake systems usually send them (exact ints only)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def _words(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(_words(v) for v in value)
    return str(_plain(value))


def _settling(expr: Expr, node_id: str, truths: dict[str, bool], negated: bool = False):
    """The comparisons that settle a node's truth value, each with its id and whether it is negated.

    A known node is settled by its parts of the same truth value (for a true ``all`` or a false
    ``any``, that is every part). An unknown node waits on its unknown parts; an unknown ``any``
    also lists its false parts, since they are why the answer still waits on the missing ones.
    ``negated`` (under a ``not``) only changes how a comparison's requirement is worded.
    """
    if isinstance(expr, Comparison):
        yield node_id, expr, negated
        return
    if isinstance(expr, Not):
        yield from _settling(expr.part, f"{node_id}.0", truths, not negated)
        return
    truth = truths.get(node_id)
    for index, part in enumerate(expr.parts):
        part_id = f"{node_id}.{index}"
        part_truth = truths.get(part_id)
        keep = part_truth == truth or (truth is None and part_truth is False and isinstance(expr, AnyOf))
        if keep:
            yield from _settling(part, part_id, truths, negated)


def _sentence(case: Case, node: Comparison, negated: bool, needs: str) -> str:
    info = FIELDS[node.field]
    operator = OPERATORS[node.operator][1] if negated else node.operator
    required = _words(node.value) if operator == "equals" else f"{OPERATORS[operator][0]} {_words(node.value)}"
    value = case.value(node.field)
    if value is None:
        return f"{info.label} is not documented ({node.field}; {needs}: {required})"
    return f"{info.label} is {_words(value)} ({needs}: {required})"


def _finding(rule: Rule, case: Case, truths: dict[str, bool], statuses: dict, prefixes: dict,
             needs: str) -> dict[str, Any]:
    truth = truths.get(rule.id)
    settling = list(_settling(rule.logic, rule.id, truths))
    missing = list(dict.fromkeys(n.field for _, n, _ in settling if case.value(n.field) is None))
    reason = f"{prefixes[truth]}: " + "; ".join(_sentence(case, n, neg, needs) for _, n, neg in settling) + "."
    evidence = [
        {"field": path, "value": _plain(case.value(path))}
        for path in rule.fields
        if case.value(path) is not None
    ]
    return {
        "id": rule.id,
        "title": rule.title,
        "requirement": rule.requirement,
        "status": statuses[truth],
        "reason": reason,
        "evidence": evidence,
        "missing": missing if truth is None else [],
        "citations": [c.to_dict() for c in rule.citations],
    }


def _outcome(criteria: list[dict[str, Any]]) -> str:
    statuses = {c["status"] for c in criteria}
    if "not_met" in statuses:
        return "criteria_not_met"
    if "insufficient_information" in statuses:
        return "information_missing"
    return "all_criteria_met"


def build_result(policy: PolicyVersion, case: Case, truths: dict[str, bool], *,
                 evaluation_id: str, evaluated_at: str, service_date: str) -> dict[str, Any]:
    criteria = [_finding(r, case, truths, CRITERION_STATUS, _PREFIX, "required") for r in policy.criteria]
    flags = [_finding(r, case, truths, FLAG_STATUS, _FLAG_PREFIX, "present when") for r in policy.flags]
    counts = {status: sum(c["status"] == status for c in criteria) for status in CRITERION_STATUS.values()}
    return {
        "evaluation_id": evaluation_id,
        "external_id": case.external_id,
        "evaluated_at": evaluated_at,
        "service_date": service_date,
        "policy": policy.header(),
        "summary": {
            "outcome": _outcome(criteria),
            **counts,
            "total": len(criteria),
            "notice": NOTICE,
        },
        "criteria": criteria,
        "flags": flags,
        "missing_information": list(dict.fromkeys(f for c in criteria for f in c["missing"])),
    }
