"""Compile a policy version into one durable-rules ruleset.

Every node of every criterion's and flag's logic (comparisons and all / any / not alike) becomes
two rules: ``<node>|true`` matches when the documented facts make the node true, ``<node>|false``
when they make it false. durable-rules comparisons (``$neq`` included) never match a missing
field, so the "false" rule is the Kleene negation pushed down to the comparisons (De Morgan),
and a node for which neither rule fires depends on a missing fact: unknown.

A code list (``includes_any``) is tested item by item: ``$iany`` of a pattern (``$mt``) that
matches the codes starting with one of the given codes is "true"; ``$iall`` of patterns that each
match the codes *not* starting with one of them is "false". durable-rules' patterns have no
negation, so each "not starting with" pattern is spelt out (see ``_not_starting_with``), and its
``$iall`` never matches an empty list, so every list handed to the engine ends with an empty
string (``facts``): a code that starts with nothing, which only the "false" patterns match.
A missing list matches neither rule: unknown.

Two rules guard the engine itself: every rule also requires the discriminator ``kind: case``
(a rule made only of negations would otherwise match the engine's own state record and loop),
and the sentinel rule ``$case`` matches every case, so each case stores a fact and the sid can be
deleted safely afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from service.policy.logic import AllOf, Comparison, Expr, Not, walk

from service.policy.rules import PolicyVersion

DISCRIMINATOR = {"kind": "case"}
SENTINEL = "$case"

_DURABLE_OPERATOR = {
    "not_equals": "$neq",
    "at_least": "$gte",
    "less_than": "$lt",
    "at_most": "$lte",
    "more_than": "$gt",
}


# durable-rules' pattern dialect: ``%`` escapes, no negated character classes, a whole-string match.
_PATTERN_SPECIAL = set(".|?*+()[]{}%")
_PRINTABLE = (" ", "~")  # the characters "not c" ranges over; codes are printable ASCII


def _literal(text: str) -> str:
    return "".join(f"%{c}" if c in _PATTERN_SPECIAL else c for c in text)


def _other_than(char: str) -> str:
    """A character class of every printable character but ``char`` (ranges, as there is no [^c])."""
    low, high = _PRINTABLE
    ranges = [(low, chr(ord(char) - 1)), (chr(ord(char) + 1), high)]
    return "[" + "".join(f"{a}-{b}" for a, b in ranges if a <= b) + "]"


def _starting_with(prefixes: list[str]) -> str:
    return "(" + "|".join(_literal(p) for p in prefixes) + ").*"


def _not_starting_with(prefix: str) -> str:
    """A pattern for the strings that do not start with ``prefix``: shorter than it and a prefix
    of it, or differing from it at some character (``M5`` -> ``([^M].*|M([^5].*)?)?``)."""
    pattern = ""
    for char in reversed(prefix):
        pattern = f"({_other_than(char)}.*|{_literal(char)}{pattern})?" if pattern else f"({_other_than(char)}.*)?"
    return pattern


def _comparison(node: Comparison) -> dict[str, Any]:
    if node.operator == "includes_any":
        return {"$iany": {node.field: {"$mt": {"$i": _starting_with(node.value)}}}}
    if node.operator == "includes_none":
        return {"$iall": {node.field: _both([{"$mt": {"$i": _not_starting_with(p)}} for p in node.value])}}
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

    def facts(self, values: dict[str, Any]) -> dict[str, Any]:
        """The facts the engine is given: the documented ``values`` (by dotted path) of the fields
        the rules read, nested as in the case, every list closed with an empty string (see the
        module docstring)."""
        facts: dict[str, Any] = {}
        for path in self.fields:
            if path in values:
                section, _, name = path.rpartition(".")
                value = values[path]
                (facts.setdefault(section, {}) if section else facts)[name] = (
                    [*value, ""] if isinstance(value, (list, tuple)) else value)
        return facts

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
