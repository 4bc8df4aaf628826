"""Turn what durable-rules decided into the result a reviewer reads (shared/contract.md).

The engine has already decided the truth of every node of every rule; this module only reads
those truths back: it names the comparisons that settle each answer (the reason), the values read
(the evidence), and the missing fields the answer still depends on. It never compares values.

What does not depend on the case (titles, citations, each comparison's requirement in words) is
worked out once per policy version, when its ``ResultBuilder`` is made.
"""

from __future__ import annotations

from typing import Any, Iterator

from service.policy.case import FIELDS
from service.policy.rules import OPERATORS, AnyOf, Comparison, Expr, Not, PolicyVersion, Rule

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


def _comparisons(expr: Expr, node_id: str, negated: bool = False) -> Iterator[tuple[str, Comparison, bool]]:
    """Every comparison of a rule's logic with its node id and whether it sits under a ``not``."""
    if isinstance(expr, Comparison):
        yield node_id, expr, negated
    elif isinstance(expr, Not):
        yield from _comparisons(expr.part, f"{node_id}.0", not negated)
    else:
        for index, part in enumerate(expr.parts):
            yield from _comparisons(part, f"{node_id}.{index}", negated)


def _settling(expr: Expr, node_id: str, truths: dict[str, bool]) -> Iterator[tuple[str, Comparison]]:
    """The comparisons that settle a node's truth value, each with its node id.

    A known node is settled by its parts of the same truth value (for a true ``all`` or a false
    ``any``, that is every part). An unknown node waits on its unknown parts; an unknown ``any``
    also lists its false parts, since they are why the answer still waits on the missing ones.
    """
    if isinstance(expr, Comparison):
        yield node_id, expr
        return
    if isinstance(expr, Not):
        yield from _settling(expr.part, f"{node_id}.0", truths)
        return
    truth = truths.get(node_id)
    for index, part in enumerate(expr.parts):
        part_id = f"{node_id}.{index}"
        part_truth = truths.get(part_id)
        keep = part_truth == truth or (truth is None and part_truth is False and isinstance(expr, AnyOf))
        if keep:
            yield from _settling(part, part_id, truths)


class _FindingWriter:
    """Writes one rule's finding (a criterion's or a flag's) from the documented values and truths."""

    def __init__(self, rule: Rule, statuses: dict, prefixes: dict, needs: str):
        self.rule = rule
        self.statuses = statuses
        self.prefixes = prefixes
        self.citations = [c.to_dict() for c in rule.citations]
        # node id -> (the field's label, what the comparison needs in words: "required: at least 6")
        self.wording: dict[str, tuple[str, str]] = {}
        for node_id, node, negated in _comparisons(rule.logic, rule.id):
            operator = OPERATORS[node.operator][1] if negated else node.operator
            required = _words(node.value) if operator == "equals" else f"{OPERATORS[operator][0]} {_words(node.value)}"
            if operator in ("includes_any", "includes_none"):
                required += ", or a code starting with one of them"
            self.wording[node_id] = (FIELDS[node.field].label, f"{needs}: {required}")

    def finding(self, values: dict[str, Any], truths: dict[str, bool]) -> dict[str, Any]:
        rule = self.rule
        truth = truths.get(rule.id)
        sentences, missing = [], []
        for node_id, node in _settling(rule.logic, rule.id, truths):
            label, needs = self.wording[node_id]
            value = values.get(node.field)
            if value is None:
                missing.append(node.field)
                sentences.append(f"{label} is not documented ({node.field}; {needs})")
            elif isinstance(value, list):  # a code list
                sentences.append(f"{label} are {_words(value) or 'none'} ({needs})")
            else:
                sentences.append(f"{label} is {_words(value)} ({needs})")
        return {
            "id": rule.id,
            "title": rule.title,
            "requirement": rule.requirement,
            "status": self.statuses[truth],
            "reason": f"{self.prefixes[truth]}: {'; '.join(sentences)}.",
            "evidence": [{"field": path, "value": _plain(values[path])} for path in rule.fields if path in values],
            "missing": list(dict.fromkeys(missing)) if truth is None else [],
            "citations": [dict(c) for c in self.citations],  # copies: results share no mutable part
        }


def _outcome(criteria: list[dict[str, Any]]) -> str:
    statuses = {c["status"] for c in criteria}
    if "not_met" in statuses:
        return "criteria_not_met"
    if "insufficient_information" in statuses:
        return "information_missing"
    return "all_criteria_met"


class ResultBuilder:
    """Builds the results of one policy version."""

    def __init__(self, policy: PolicyVersion):
        self.policy = policy
        self._header = policy.header()
        self._criteria = [_FindingWriter(r, CRITERION_STATUS, _PREFIX, "required") for r in policy.criteria]
        self._flags = [_FindingWriter(r, FLAG_STATUS, _FLAG_PREFIX, "present when") for r in policy.flags]

    def build(self, external_id: str, values: dict[str, Any], truths: dict[str, bool], *,
              evaluation_id: str, evaluated_at: str, service_date: str) -> dict[str, Any]:
        """The result for a case's documented ``values`` (by field path) and its node ``truths``."""
        criteria = [writer.finding(values, truths) for writer in self._criteria]
        flags = [writer.finding(values, truths) for writer in self._flags]
        counts = {status: sum(c["status"] == status for c in criteria) for status in CRITERION_STATUS.values()}
        return {
            "evaluation_id": evaluation_id,
            "external_id": external_id,
            "evaluated_at": evaluated_at,
            "service_date": service_date,
            "policy": dict(self._header),
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
