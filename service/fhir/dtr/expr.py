"""A small expression tree: the one source both the CQL text (``cql``) and its ELM (``elm``) are
rendered from, so the two cannot say different things.

Only what pre-population from the field dictionary needs: references, properties, a retrieve by
value set, single-source queries (where / let / return / sort by column), tuples and lists, type
tests and casts, conditionals, and the operators named in ``OPERATORS``. Each operator has one CQL
spelling and one ELM node type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FHIR_NS = "http://hl7.org/fhir"
SYSTEM_NS = "urn:hl7-org:elm-types:r1"


class Node:
    """An expression; build them with the helpers below."""


@dataclass(frozen=True, eq=False)
class Lit(Node):
    value: Any  # str, bool, int, float (a Decimal), or None (null)


@dataclass(frozen=True, eq=False)
class Qty(Node):
    """A quantity literal (``1 month``)."""
    value: int | float
    unit: str


@dataclass(frozen=True, eq=False)
class CodeLit(Node):
    """A System Code (``Code { code: 'Y', system: '...', display: 'Yes' }``)."""
    system: str
    code: str
    display: str


@dataclass(frozen=True, eq=False)
class Ref(Node):
    """An expression (define) of this library."""
    name: str


@dataclass(frozen=True, eq=False)
class Param(Node):
    name: str


@dataclass(frozen=True, eq=False)
class Alias(Node):
    """A query's alias (or a let identifier, with ``let=True``)."""
    name: str
    let: bool = False


@dataclass(frozen=True, eq=False)
class Operand(Node):
    """An operand of the function being defined."""
    name: str


@dataclass(frozen=True, eq=False)
class ValueSetRef(Node):
    name: str


@dataclass(frozen=True, eq=False)
class Prop(Node):
    """``source.path``; a FHIR primitive's value is its ``.value``."""
    source: Node
    path: str


@dataclass(frozen=True, eq=False)
class Op(Node):
    """An operator of ``OPERATORS`` applied to ``args``; ``precision`` for date and age operators."""
    op: str
    args: tuple[Node, ...]
    precision: str | None = None


@dataclass(frozen=True, eq=False)
class Call(Node):
    """A function of this library."""
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, eq=False)
class Retrieve(Node):
    """``[Type]`` or ``[Type: "value set"]`` (matched on the resource's ``code``)."""
    resource: str
    codes: ValueSetRef | None = None


@dataclass(frozen=True, eq=False)
class Query(Node):
    alias: str
    source: Node
    lets: tuple[tuple[str, Node], ...] = ()
    where: Node | None = None
    ret: Node | None = None          # ``return all`` (duplicates kept: they count)
    sort_by: str | None = None       # ``sort by <column>`` ascending, on the returned tuples


@dataclass(frozen=True, eq=False)
class TupleOf(Node):
    fields: tuple[tuple[str, Node], ...]


@dataclass(frozen=True, eq=False)
class ListOf(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, eq=False)
class Is(Node):
    operand: Node
    fhir_type: str  # a FHIR type name: Quantity, integer, dateTime ...


@dataclass(frozen=True, eq=False)
class As(Node):
    operand: Node
    fhir_type: str


@dataclass(frozen=True, eq=False)
class If(Node):
    condition: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True, eq=False)
class Case(Node):
    """``case [comparand] when .. then .. else .. end`` (without a comparand, each ``when`` is a condition)."""
    comparand: Node | None
    whens: tuple[tuple[Node, Node], ...]
    otherwise: Node


@dataclass(frozen=True)
class Define:
    name: str
    expression: Node
    comment: str | None = None


@dataclass(frozen=True)
class Function:
    name: str
    operands: tuple[tuple[str, str], ...]  # (name, System type name)
    expression: Node
    comment: str | None = None


@dataclass(frozen=True)
class ValueSetDef:
    name: str
    url: str
    version: str


@dataclass
class LibrarySource:
    """What a library says: its name and version, parameters, value sets, functions and defines."""

    name: str
    version: str
    parameters: list[tuple[str, str]] = field(default_factory=list)  # (name, System type name)
    value_sets: list[ValueSetDef] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)
    defines: list[Define] = field(default_factory=list)


# Operators: name -> (ELM node type, how ELM holds the arguments, CQL spelling).
# Argument styles: "operand" (one), "operands" (a list), "source" (aggregates), "none", or
# "parts" (the Date and DateTime selectors: named components).
OPERATORS: dict[str, tuple[str, str, str]] = {
    "Equal": ("Equal", "operands", "{0} = {1}"),
    "Less": ("Less", "operands", "{0} < {1}"),
    "LessOrEqual": ("LessOrEqual", "operands", "{0} <= {1}"),
    "GreaterOrEqual": ("GreaterOrEqual", "operands", "{0} >= {1}"),
    "And": ("And", "operands", "{0} and {1}"),
    "Or": ("Or", "operands", "{0} or {1}"),
    "Not": ("Not", "operand", "not {0}"),
    "IsNull": ("IsNull", "operand", "{0} is null"),
    "Coalesce": ("Coalesce", "operands", "Coalesce({*})"),
    "Exists": ("Exists", "operand", "exists {0}"),
    "First": ("First", "source", "First({0})"),
    "Last": ("Last", "source", "Last({0})"),
    "Max": ("Max", "source", "Max({0})"),
    "Count": ("Count", "source", "Count({0})"),
    "Sum": ("Sum", "source", "Sum({0})"),
    "Flatten": ("Flatten", "operand", "Flatten({0})"),
    "Distinct": ("Distinct", "operand", "distinct {0}"),
    "SingletonFrom": ("SingletonFrom", "operand", "singleton from {0}"),
    "StartsWith": ("StartsWith", "operands", "StartsWith({0}, {1})"),
    "Matches": ("Matches", "operands", "Matches({0}, {1})"),
    "In": ("In", "operands", "{0} in {1}"),
    "Add": ("Add", "operands", "{0} + {1}"),
    "Subtract": ("Subtract", "operands", "{0} - {1}"),
    "Multiply": ("Multiply", "operands", "{0} * {1}"),
    "Divide": ("Divide", "operands", "{0} / {1}"),
    "Round": ("Round", "round", "Round({0}, {1})"),
    "ToDecimal": ("ToDecimal", "operand", "ToDecimal({0})"),
    "Length": ("Length", "operand", "Length({0})"),
    "DateFrom": ("DateFrom", "operand", "date from {0}"),
    "Component": ("DateTimeComponentFrom", "operand", "{p} from {0}"),
    "TimezoneOffset": ("TimezoneOffsetFrom", "operand", "timezoneoffset from {0}"),
    "MonthsBetween": ("DurationBetween", "operands", "months between {0} and {1}"),
    "AgeAt": ("CalculateAgeAt", "operands", "CalculateAgeInYearsAt({0}, {1})"),
    "Date": ("Date", "parts", "Date({*})"),
    "DateTime": ("DateTime", "parts", "DateTime({*})"),
    "Today": ("Today", "none", "Today()"),
}
DATE_PARTS = ("year", "month", "day")
DATETIME_PARTS = ("year", "month", "day", "hour", "minute", "second", "millisecond", "timezoneOffset")


# --- helpers that read like CQL ----------------------------------------------------------------------

def lit(value: Any) -> Lit:
    return Lit(value)


NULL = Lit(None)


def op(name: str, *args: Node, precision: str | None = None) -> Op:
    if name not in OPERATORS:
        raise ValueError(f"no operator {name}")
    return Op(name, tuple(args), precision)


def eq(a: Node, b: Node) -> Op:
    return op("Equal", a, b)


def all_of(*conditions: Node) -> Node:
    result = conditions[0]
    for condition in conditions[1:]:
        result = op("And", result, condition)
    return result


def any_of(*conditions: Node) -> Node:
    result = conditions[0]
    for condition in conditions[1:]:
        result = op("Or", result, condition)
    return result


def strings(*values: str) -> ListOf:
    return ListOf(tuple(Lit(v) for v in values))


def get(node: Node, path: str) -> Node:
    """``node.a.b``: one property per dotted part (a FHIR primitive's System value is its ``value``)."""
    for part in path.split("."):
        node = Prop(node, part)
    return node
