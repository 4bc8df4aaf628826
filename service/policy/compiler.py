"""Compile a policy version into one durable-rules ruleset.

Every node of every criterion's and flag's logic (comparisons and all / any / not alike) becomes
two rules: ``<node>|true`` matches when the documented facts make the node true, ``<node>|false``
when they make it false. durable-rules comparisons (``$neq`` included) never match a missing
field, so the "false" rule is the Kleene negation pushed down to the comparisons (De Morgan),
and a node for which neither rule fires depends on a missing fact: unknown.

Two rules guard the engine itself: every rule also requires the discriminator ``kind: case``
(a rule made only of negations would otherwise match the engine's own state record and loop),
and the sentinel rule ``$case`` matches every case, so each case stores a fact and the sid can be
deleted safely afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.policy.rules import AllOf, Comparison, Expr, Not, PolicyVersion, walk

DISCRIMINATOR = {"kind": "case"}
SENTINEL = "$case"

_DURABLE_OPERATOR = {
    "not_equals": "$neq",
    "at_least": "$gte",
    "less_than": "$lt",
    "at_most": "$lte",
    "more_than": "$gt",
}


def _comparison(node: Comparison) -> dict[str, Any]:
    if node.operator == "equals":
        return {node.field: node.value}
    if node.operator == "one_of":
        return _either([{node.field: v} for v in node.value])
    if node.operator == "none_of":
        return _both([{"$neq": {node.field: v}} for v in node.value])
    return {_DURABLE_OPERATOR[node.operator]: {node.field: node.value}}


def _both(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return conditions[0] if len(conditions) == 1 else {"$and": conditions}


def _either(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return conditions[0] if len(conditions) == 1 else {"$or": conditions}


def condition(expr: Expr, truth: bool) -> dict[str, Any]:
    """The durable-rules condition under which the facts make ``expr`` equal to ``truth``."""
    if isinstance(expr, Comparison):
        return _comparison(expr if truth else expr.negated())
    if isinstance(expr, Not):
        return condition(expr.part, not truth)
    parts = [condition(p, truth) for p in expr.parts]
    conjunctive = isinstance(expr, AllOf) == truth
    return _both(parts) if conjunctive else _either(parts)


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy version as a durable-rules ruleset, and how to read back what fired."""

    name: str
    ruleset: dict[str, dict[str, Any]]
    fields: tuple[str, ...]

    @staticmethod
    def node_truths(fired: set[str]) -> dict[str, bool]:
        """``{node_id: True/False}`` from the rules that fired; unknown nodes are absent."""
        truths: dict[str, bool] = {}
        for rule_name in fired:
            if rule_name == SENTINEL:
                continue
            node_id, _, outcome = rule_name.rpartition("|")
            truth = outcome == "true"
            if truths.get(node_id, truth) != truth:
                raise RuntimeError(f"both truth values fired for {node_id}")
            truths[node_id] = truth
        return truths


def compile_policy(policy: PolicyVersion) -> CompiledPolicy:
    ruleset: dict[str, dict[str, Any]] = {SENTINEL: {"all": [{"m": dict(DISCRIMINATOR)}]}}
    fields: dict[str, None] = {}
    for rule in (*policy.criteria, *policy.flags):
        fields.update(dict.fromkeys(rule.fields))
        for node_id, node in walk(rule.logic, rule.id):
            for truth in (True, False):
                guarded = {"$and": [dict(DISCRIMINATOR), condition(node, truth)]}
                ruleset[f"{node_id}|{str(truth).lower()}"] = {"all": [{"m": guarded}]}
    return CompiledPolicy(name=policy.key, ruleset=ruleset, fields=tuple(fields))
