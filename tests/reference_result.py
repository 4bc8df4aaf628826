"""The result building as it was before results were written as JSON from per-pattern templates
(service/engine/result.py, November 2026): findings built as dicts, then serialized. Kept only
here, as the reference that tests/test_result_reference.py checks the service against, byte for
byte; the service never imports it."""

from __future__ import annotations

from typing import Any, Iterator

from service.policy.fields import Dictionary, FieldSpec
from service.policy.logic import OPERATORS, AnyOf, Comparison, Expr, Not, walk
from service.policy.rules import PolicyVersion, Rule

NOTICE = "These findings support a reviewer's determination; they are not a coverage decision."
CRITERION_STATUS = {True: "met", False: "not_met", None: "insufficient_information"}
FLAG_STATUS = {True: "present", False: "absent", None: "unknown"}
_PREFIX = {True: "Met", False: "Not met", None: "Insufficient information"}
_FLAG_PREFIX = {True: "Present", False: "Absent", None: "Unknown"}
_EITHER = {"required": "is required", "present when": "makes it present"}
PLANS_PER_RULE = 4096  # bounds the memory of the patterns kept per rule (a rule has few in practice)


class _Value:
    """Where a documented value's words go in a reason."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


def _plain(value: Any) -> Any:
    """7.0 -> 7, so evidence shows numbers as intake systems usually send them (exact ints only)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


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


def _alternatives(expr: Expr, node_id: str) -> Iterator[tuple[str, Expr]]:
    """The ``any`` nodes of a rule's logic with their ids (outside any ``not``: a negated ``any``
    is an ``all`` and reads as one)."""
    if isinstance(expr, AnyOf):
        yield node_id, expr
    if not isinstance(expr, Not):
        for index, part in enumerate(getattr(expr, "parts", ())):
            yield from _alternatives(part, f"{node_id}.{index}")


def _evidence(path: str, value: Any, provenance: dict[str, dict[str, str]]) -> dict[str, Any]:
    item = {"field": path, "value": _plain(value)}
    if provenance and path in provenance:
        item["source"] = dict(provenance[path])
    return item


class _FindingWriter:
    """Writes one rule's finding (a criterion's or a flag's) from the documented values and truths."""

    def __init__(self, rule: Rule, dictionary: Dictionary, statuses: dict, prefixes: dict, needs: str):
        self.rule = rule
        self.statuses = statuses
        self.prefixes = prefixes
        self.citations = [c.to_dict() for c in rule.citations]
        self.specs: dict[str, FieldSpec] = {path: dictionary[path] for path in rule.fields}
        # node id -> what the comparison needs in words ("required: at least 6"), and the same as
        # one alternative of an ``any`` ("Back pain NRS at least 6")
        self.needs: dict[str, str] = {}
        alternative: dict[str, str] = {}
        for node_id, node, negated in _comparisons(rule.logic, rule.id):
            spec = self.specs[node.field]
            operator = OPERATORS[node.operator][1] if negated else node.operator
            value = spec.words(node.value)
            required = value if operator == "equals" else f"{OPERATORS[operator][0]} {value}"
            if operator in ("includes_any", "includes_none"):
                required += ", or a code starting with one of them"
            self.needs[node_id] = f"{needs}: {required}"
            alternative[node_id] = f"{spec.label} {required}"
        # an ``any`` whose parts are plain comparisons reads as "either A or B is required"
        self.either: dict[str, str] = {}
        for node_id, node in _alternatives(rule.logic, rule.id):
            parts = [f"{node_id}.{i}" for i in range(len(node.parts))]
            if all(part in alternative for part in parts):
                self.either[node_id] = f"either {' or '.join(alternative[part] for part in parts)} {_EITHER[needs]}"

        self.node_ids = tuple(node_id for node_id, _ in walk(rule.logic, rule.id))
        self._plans: dict[tuple, tuple] = {}

    def _sentence(self, node_id: str, node: Comparison, present: set[str], plain: bool) -> list:
        spec = self.specs[node.field]
        if node.field not in present:
            found = f"{spec.label} is not documented ({node.field}"
            return [f"{found})" if plain else f"{found}; {self.needs[node_id]})"]
        found = [f"{spec.label} {'are' if spec.kind == 'code_list' else 'is'} ", _Value(node.field)]
        return found if plain else [*found, f" ({self.needs[node_id]})"]

    def _plan(self, truths: dict[str, bool], present: set[str]) -> tuple:
        """Everything of the finding but the values' words: for one pattern of node truths and
        documented fields (a field is documented or not, whatever its value)."""
        rule = self.rule
        truth = truths.get(rule.id)
        sentences, missing = [], []
        settling = list(_settling(rule.logic, rule.id, truths))
        # An ``any`` that is not met, or still waits, states its alternatives once, then what was found.
        groups = {node_id: [] for node_id in self.either if truths.get(node_id) is not True}
        for node_id, node in settling:
            if node.field not in present:
                missing.append(node.field)
            group = node_id.rpartition(".")[0]
            if group in groups:
                groups[group].append(self._sentence(node_id, node, present, plain=True))
                if len(groups[group]) == 1:
                    sentences.append(group)  # placeholder, filled below
            else:
                sentences.append(self._sentence(node_id, node, present, plain=False))
        parts: list = [f"{self.prefixes[truth]}: "]
        for index, sentence in enumerate(sentences):
            if index:
                parts.append("; ")
            if isinstance(sentence, str):  # an ``any``'s group
                parts.append(f"{self.either[sentence]}: ")
                for number, alternative in enumerate(groups[sentence]):
                    parts.extend([", ", *alternative] if number else alternative)
            else:
                parts.extend(sentence)
        parts.append(".")
        merged: list = []  # neighbouring words joined, so a case joins a few pieces only
        for part in parts:
            if merged and isinstance(part, str) and isinstance(merged[-1], str):
                merged[-1] += part
            else:
                merged.append(part)
        return (
            self.statuses[truth],
            tuple(merged),
            tuple(path for path in rule.fields if path in present),
            tuple(dict.fromkeys(missing)) if truth is None else (),
        )

    def finding(self, values: dict[str, Any], truths: dict[str, bool],
                provenance: dict[str, dict[str, str]]) -> dict[str, Any]:
        key = (*[truths.get(node_id) for node_id in self.node_ids], *[path in values for path in self.rule.fields])
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(truths, {path for path in self.rule.fields if path in values})
            if len(self._plans) < PLANS_PER_RULE:
                self._plans[key] = plan
        status, parts, documented, missing = plan
        specs = self.specs
        return {
            "id": self.rule.id,
            "title": self.rule.title,
            "requirement": self.rule.requirement,
            "status": status,
            "reason": "".join([part if part.__class__ is str else (specs[part.path].words(values[part.path]) or "none")
                               for part in parts]),
            "evidence": [_evidence(path, values[path], provenance) for path in documented],
            "missing": list(missing),
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

    def __init__(self, policy: PolicyVersion, dictionary: Dictionary):
        self.policy = policy
        self._header = policy.header()
        self._criteria = [_FindingWriter(r, dictionary, CRITERION_STATUS, _PREFIX, "required") for r in policy.criteria]
        self._flags = [_FindingWriter(r, dictionary, FLAG_STATUS, _FLAG_PREFIX, "present when") for r in policy.flags]
        read = {path for rule in (*policy.criteria, *policy.flags) for path in rule.fields}
        # Documented values no criterion or flag reads, shown so nothing a submitter sent is hidden.
        self._unread = {path: spec.label for path, spec in dictionary.fields.items() if path not in read}

    def build(self, external_id: str, values: dict[str, Any], truths: dict[str, bool], *,
              evaluation_id: str, evaluated_at: str, service_date: str,
              provenance: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
        """The result for a case's documented ``values`` (by field path, every documented field of
        the dictionary), its node ``truths``, and where FHIR values came from (``provenance``)."""
        provenance = provenance or {}
        criteria = [writer.finding(values, truths, provenance) for writer in self._criteria]
        flags = [writer.finding(values, truths, provenance) for writer in self._flags]
        counts = {status: sum(c["status"] == status for c in criteria) for status in CRITERION_STATUS.values()}
        other = [{"field": path, "label": label, **_evidence(path, values[path], provenance)}
                 for path, label in self._unread.items() if path in values]
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
                "flags_present": [f["id"] for f in flags if f["status"] == "present"],
                "notice": NOTICE,
            },
            "criteria": criteria,
            "flags": flags,
            "other_evidence": other,
            "missing_information": list(dict.fromkeys(f for c in criteria for f in c["missing"])),
        }
