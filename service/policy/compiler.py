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
and the sentinel rule matches every case, so each case stores a fact and the sid can be deleted
safely afterwards.

Names are short, since durable-rules writes the whole fact into every action's message and
parses every name it is given (measured: 12 % of its time on the ISASS policy): a fact's
sections and fields are named by capital letters (``A``, ``B``, … ``AA``: the engine's own keys,
``kind``, ``sid``, ``id``, are lower case), rules by numbers of one width (``00``, ``01``, …; the
sentinel is the first), so that the engine's host reads a rule's name at a fixed place. What
each rule means is kept beside the ruleset (``outcomes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from service.policy.logic import AllOf, Comparison, Expr, Not, walk

from service.policy.rules import PolicyVersion

DISCRIMINATOR = {"kind": "case"}

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


def condition(expr: Expr, truth: bool, keys: dict[str, str]) -> dict[str, Any]:
    """The durable-rules condition under which the facts make ``expr`` equal to ``truth``
    (``keys``: each field path's name in the facts)."""
    if isinstance(expr, Comparison):
        node = expr if truth else expr.negated()
        return _comparison(Comparison(keys[node.field], node.operator, node.value))
    if isinstance(expr, Not):
        return condition(expr.part, not truth, keys)
    parts = [condition(p, truth, keys) for p in expr.parts]
    conjunctive = isinstance(expr, AllOf) == truth
    return _both(parts) if conjunctive else _either(parts)


def _letters(number: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA, …: a short name no key of the engine's own can be."""
    name = ""
    while True:
        number, digit = divmod(number, 26)
        name = chr(ord("A") + digit) + name
        if not number:
            return name
        number -= 1


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy version as a durable-rules ruleset, and how to read back what fired."""

    name: str
    ruleset: dict[str, dict[str, Any]]
    fields: tuple[str, ...]  # the field paths the rules read, in the order they are first read
    keys: dict[str, str]  # each field path's name in the facts: "B.C" (a section's field), "D"
    outcomes: dict[str, tuple[str, bool] | None]  # rule name -> (node id, truth); the sentinel -> None
    sentinel: str

    lists: frozenset[str] = frozenset()  # the fields read as code lists (includes_any / includes_none)

    def __post_init__(self) -> None:
        # section's key ("" for top-level fields) -> its fields, and those of them that are lists
        layout: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {}
        for path in self.fields:
            section, _, name = self.keys[path].rpartition(".")
            layout.setdefault(section, ([], []))[path in self.lists].append((path, name))
        object.__setattr__(self, "_layout", tuple((section, tuple(plain), tuple(lists))
                                                  for section, (plain, lists) in layout.items()))

    def facts(self, values: dict[str, Any]) -> dict[str, Any]:
        """The facts the engine is given: the documented ``values`` (by dotted path) of the fields
        the rules read, nested as in the case under their short names, every list closed with an
        empty string (see the module docstring)."""
        facts: dict[str, Any] = {}
        for section, plain, lists in self._layout:
            part = {name: values[path] for path, name in plain if path in values}
            for path, name in lists:
                if path in values:
                    part[name] = [*values[path], ""]
            if not section:
                facts.update(part)
            elif part:
                facts[section] = part
        return facts

    def node_truths(self, fired: set[str]) -> dict[str, bool]:
        """``{node_id: True/False}`` from the rules that fired; unknown nodes are absent."""
        truths: dict[str, bool] = {}
        outcomes = self.outcomes
        for rule_name in fired:
            outcome = outcomes[rule_name]
            if outcome is None:  # the sentinel
                continue
            node_id, truth = outcome
            if truths.setdefault(node_id, truth) is not truth:
                raise RuntimeError(f"both truth values fired for {node_id}")
        return truths


def compile_policy(policy: PolicyVersion) -> CompiledPolicy:
    rules = (*policy.criteria, *policy.flags)
    fields = tuple(dict.fromkeys(path for rule in rules for path in rule.fields))
    sections = {section: _letters(i) for i, section in enumerate(dict.fromkeys(
        path.rpartition(".")[0] for path in fields if "." in path))}
    keys = {}
    for number, path in enumerate(fields, start=len(sections)):
        section = path.rpartition(".")[0]
        keys[path] = f"{sections[section]}.{_letters(number)}" if section else _letters(number)
    meanings: list[tuple[str, bool] | None] = [None]  # the sentinel first
    conditions = [dict(DISCRIMINATOR)]
    for rule in rules:
        for node_id, node in walk(rule.logic, rule.id):
            for truth in (True, False):
                meanings.append((node_id, truth))
                conditions.append({"$and": [dict(DISCRIMINATOR), condition(node, truth, keys)]})
    width = len(str(len(meanings) - 1))
    names = [f"{number:0{width}d}" for number in range(len(meanings))]
    lists = frozenset(node.field for rule in rules for _, node in walk(rule.logic, rule.id)
                      if isinstance(node, Comparison) and node.operator in ("includes_any", "includes_none"))
    return CompiledPolicy(
        name=policy.key,
        ruleset={name: {"all": [{"m": matched}]} for name, matched in zip(names, conditions)},
        fields=fields,
        keys=keys,
        outcomes=dict(zip(names, meanings)),
        sentinel=names[0],
        lists=lists,
    )
