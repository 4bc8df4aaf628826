"""The logic of a criterion or flag: comparisons of case fields combined with all / any / not,
parsed from a rule file and checked against the field dictionary (format: rules/README.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator, Union

from service.policy.fields import Dictionary, FieldSpec


class RuleError(Exception):
    """One or more rule files (or the field dictionary) are invalid; the message lists every problem."""


# Each comparison operator: its words in results, and the operator that is its Kleene negation.
OPERATORS: dict[str, tuple[str, str]] = {
    "equals": ("equal to", "not_equals"),
    "not_equals": ("other than", "equals"),
    "at_least": ("at least", "less_than"),
    "less_than": ("less than", "at_least"),
    "at_most": ("at most", "more_than"),
    "more_than": ("more than", "at_most"),
    "one_of": ("one of", "none_of"),
    "none_of": ("none of", "one_of"),
    # code lists: a code matches a given code when it equals it or starts with it (M54.5 -> M54.50)
    "includes_any": ("include one of", "includes_none"),
    "includes_none": ("include none of", "includes_any"),  # only as the negation of includes_any
}
_OPERATORS_BY_KIND = {
    "boolean": {"equals", "not_equals"},
    "enum": {"equals", "not_equals", "one_of", "none_of"},
    "integer": {"equals", "not_equals", "at_least", "less_than", "at_most", "more_than"},
    "number": {"equals", "not_equals", "at_least", "less_than", "at_most", "more_than"},
    "code_list": {"includes_any"},
}
# What a code (or the start of one) given to includes_any may look like: letters, digits, dots and
# dashes, as ICD-10-CM, CPT, HCPCS, SNOMED CT and LOINC write their codes.
CODE_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,31}$")


@dataclass(frozen=True)
class Comparison:
    field: str
    operator: str
    value: Any  # a list for one_of / none_of

    def negated(self) -> "Comparison":
        return Comparison(self.field, OPERATORS[self.operator][1], self.value)


@dataclass(frozen=True)
class AllOf:
    parts: tuple["Expr", ...]


@dataclass(frozen=True)
class AnyOf:
    parts: tuple["Expr", ...]


@dataclass(frozen=True)
class Not:
    part: "Expr"


Expr = Union[Comparison, AllOf, AnyOf, Not]


def children(expr: Expr) -> tuple[Expr, ...]:
    if isinstance(expr, (AllOf, AnyOf)):
        return expr.parts
    if isinstance(expr, Not):
        return (expr.part,)
    return ()


def walk(expr: Expr, node_id: str) -> Iterator[tuple[str, Expr]]:
    """Every node of a rule's logic with its stable id (root: the rule id; parts: ``id.0.1``)."""
    yield node_id, expr
    for index, child in enumerate(children(expr)):
        yield from walk(child, f"{node_id}.{index}")


def fields_of(expr: Expr) -> list[str]:
    """The case fields a rule reads, in the order the rule names them, each once."""
    seen = dict.fromkeys(node.field for _, node in walk(expr, "") if isinstance(node, Comparison))
    return list(seen)


def to_data(expr: Expr) -> dict[str, Any]:
    """The logic as the rule file writes it (for ``GET /v1/policies/{id}``)."""
    if isinstance(expr, Comparison):
        return {"field": expr.field, expr.operator: expr.value}
    if isinstance(expr, AllOf):
        return {"all": [to_data(p) for p in expr.parts]}
    if isinstance(expr, AnyOf):
        return {"any": [to_data(p) for p in expr.parts]}
    return {"not": to_data(expr.part)}


def _value_problem(info: FieldSpec, operator: str, value: Any) -> str | None:
    if operator == "includes_any":
        if not isinstance(value, list) or not value:
            return f"{operator} needs a non-empty list of codes"
        if len(set(value)) != len(value):
            return f"{operator} lists a code twice"
        wrong = next((v for v in value if not isinstance(v, str) or not CODE_PREFIX.match(v)), None)
        if wrong is not None:
            return (f"{wrong!r} does not look like a code or the start of one "
                    f"(letters, digits, '.' and '-', at most 32 characters, e.g. M54.5)")
        return None
    if operator in ("one_of", "none_of"):
        if not isinstance(value, list) or not value:
            return f"{operator} needs a non-empty list of values"
        if len(set(value)) != len(value):
            return f"{operator} lists a value twice"
        return next(filter(None, (_value_problem(info, "equals", v) for v in value)), None)
    if info.kind == "boolean" and not isinstance(value, bool):
        return f"{info.path} is true or false, not {value!r}"
    if info.kind == "enum" and value not in info.choices:
        return f"{value!r} is not a value of {info.path} (one of: {', '.join(info.choices)})"
    if info.kind in ("integer", "number") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"{info.path} is a number, not {value!r}"
    return None


def parse_logic(data: Any, where: str, dictionary: Dictionary) -> Expr:
    """Parse one logic node; raise RuleError naming ``where`` (e.g. ``met_when.all[1]``)."""
    if not isinstance(data, dict):
        raise RuleError(f"{where}: expected a mapping (field + operator, or all / any / not)")
    combinators = [key for key in ("all", "any", "not") if key in data]
    if combinators:
        if len(data) != 1:
            raise RuleError(f"{where}: '{combinators[0]}' must stand alone in its mapping")
        key = combinators[0]
        if key == "not":
            return Not(parse_logic(data["not"], f"{where}.not", dictionary))
        parts = data[key]
        if not isinstance(parts, list) or len(parts) < 2:
            raise RuleError(f"{where}.{key}: expected a list of at least two conditions")
        parsed = tuple(parse_logic(p, f"{where}.{key}[{i}]", dictionary) for i, p in enumerate(parts))
        return AllOf(parsed) if key == "all" else AnyOf(parsed)
    if "field" not in data:
        raise RuleError(f"{where}: expected 'field' with one operator, or all / any / not")
    operators = [key for key in data if key != "field"]
    if len(operators) != 1 or operators[0] not in OPERATORS:
        raise RuleError(
            f"{where}: expected exactly one operator beside 'field' "
            f"({', '.join(OPERATORS)}), got {', '.join(map(str, operators)) or 'none'}"
        )
    path, operator = data["field"], operators[0]
    info = dictionary.get(path) if isinstance(path, str) else None
    if info is None:
        raise RuleError(f"{where}: unknown case field {path!r} (not in the field dictionary, fields.yaml)")
    if info.evidence_only:
        raise RuleError(f"{where}: {path} is evidence only in the field dictionary; no rule may read it")
    if operator not in _OPERATORS_BY_KIND[info.kind]:
        allowed = ", ".join(sorted(_OPERATORS_BY_KIND[info.kind]))
        raise RuleError(f"{where}: {operator} cannot test {info.kind} field {path} (use {allowed})")
    problem = _value_problem(info, operator, data[operator])
    if problem:
        raise RuleError(f"{where}: {problem}")
    return Comparison(path, operator, data[operator])
