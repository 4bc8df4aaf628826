"""CQL 1.5 text rendered from the expression tree of ``expr`` (its ELM: ``elm``), for people and
for DTR clients that translate CQL themselves. Compound operands are parenthesized, so the text
never leans on CQL's precedence rules; path parts that are CQL keywords are quoted.
"""

from __future__ import annotations

import re

from service.fhir.dtr.expr import (
    OPERATORS,
    Alias,
    As,
    Call,
    Case,
    CodeLit,
    If,
    Is,
    LibrarySource,
    ListOf,
    Lit,
    Node,
    Op,
    Operand,
    Param,
    Prop,
    Qty,
    Query,
    Ref,
    Retrieve,
    TupleOf,
    ValueSetRef,
)

_KEYWORDS = {
    "after", "all", "and", "as", "asc", "ascending", "before", "between", "by", "called", "case", "cast",
    "code", "codesystem", "collapse", "contains", "context", "convert", "date", "day", "days", "default",
    "define", "desc", "descending", "difference", "display", "distinct", "div", "duration", "during",
    "else", "end", "ends", "except", "exists", "expand", "false", "flatten", "from", "function", "hour",
    "if", "implies", "in", "include", "includes", "included", "intersect", "interval", "is", "let",
    "library", "list", "maximum", "meets", "millisecond", "minimum", "minute", "mod", "month", "not",
    "null", "occurs", "of", "or", "overlaps", "parameter", "per", "point", "predecessor", "properly",
    "return", "same", "second", "singleton", "sort", "start", "starts", "successor", "such", "that",
    "then", "time", "timezoneoffset", "to", "true", "tuple", "union", "using", "valueset", "version",
    "week", "when", "where", "width", "with", "within", "without", "xor", "year",
}
_SIMPLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CALL_FORM = re.compile(r"^[A-Za-z]+\(")


def quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _part(name: str) -> str:
    return name if _SIMPLE.match(name) and name not in _KEYWORDS else quoted(name)


def _string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def text(n: Node) -> str:
    """The CQL of one expression."""
    if isinstance(n, Lit):
        if n.value is None:
            return "null"
        if isinstance(n.value, bool):
            return "true" if n.value else "false"
        if isinstance(n.value, str):
            return _string(n.value)
        return repr(float(n.value)) if isinstance(n.value, float) else str(n.value)
    if isinstance(n, Qty):
        return f"{n.value} {n.unit}"
    if isinstance(n, CodeLit):
        return f"Code {{ code: {_string(n.code)}, system: {_string(n.system)}, display: {_string(n.display)} }}"
    if isinstance(n, (Ref, Param, ValueSetRef)):
        return quoted(n.name)
    if isinstance(n, (Alias, Operand)):
        return n.name
    if isinstance(n, Prop):
        return f"{_wrap(n.source)}.{_part(n.path)}"
    if isinstance(n, Op):
        return _operator(n)
    if isinstance(n, Call):
        return f"{quoted(n.name)}({', '.join(_wrap(a) for a in n.args)})"
    if isinstance(n, Retrieve):
        return f"[{n.resource}: {quoted(n.codes.name)}]" if n.codes is not None else f"[{n.resource}]"
    if isinstance(n, Query):
        return _query(n)
    if isinstance(n, TupleOf):
        return "Tuple { " + ", ".join(f"{_part(name)}: {_wrap(v)}" for name, v in n.fields) + " }"
    if isinstance(n, ListOf):
        return "{ " + ", ".join(_wrap(i) for i in n.items) + " }" if n.items else "{}"
    if isinstance(n, Is):
        return f"{_wrap(n.operand)} is FHIR.{n.fhir_type}"
    if isinstance(n, As):
        return f"{_wrap(n.operand)} as FHIR.{n.fhir_type}"
    if isinstance(n, If):
        return f"if {text(n.condition)} then {_wrap(n.then)} else {_wrap(n.otherwise)}"
    if isinstance(n, Case):
        whens = " ".join(f"when {text(w)} then {_wrap(t)}" for w, t in n.whens)
        head = "case" if n.comparand is None else f"case {_wrap(n.comparand)}"
        return f"{head} {whens} else {_wrap(n.otherwise)} end"
    raise TypeError(f"no CQL for {type(n).__name__}")


def _compound(n: Node) -> bool:
    if isinstance(n, Op):
        return not _CALL_FORM.match(OPERATORS[n.op][2])
    return isinstance(n, (Query, If, Case, Is, As))


def _wrap(n: Node) -> str:
    return f"({text(n)})" if _compound(n) else text(n)


def _operator(n: Op) -> str:
    spelling = OPERATORS[n.op][2]
    args = [_wrap(a) for a in n.args]
    if "{*}" in spelling:
        return spelling.replace("{*}", ", ".join(_wrap(a) for a in n.args))
    return spelling.format(*args, p=(n.precision or "").lower())


def _query(n: Query) -> str:
    source = text(n.source) if isinstance(n.source, (Retrieve, Ref)) else f"({text(n.source)})"
    lines = [f"{source} {n.alias}"]
    if n.lets:
        lines.append("  let " + ",\n    ".join(f"{name}: {_wrap(v)}" for name, v in n.lets))
    if n.where is not None:
        lines.append(f"  where {text(n.where)}")
    if n.ret is not None:
        lines.append(f"  return all {_wrap(n.ret)}")
    if n.sort_by is not None:
        lines.append(f"  sort by {_part(n.sort_by)}")
    return "\n".join(lines)


def library(source: LibrarySource, comment: str | None = None) -> str:
    """The CQL text of a whole library, context Patient."""
    out: list[str] = []
    if comment:
        out += [f"// {line}" if line else "//" for line in comment.splitlines()] + [""]
    out += [f"library {_part(source.name)} version {_string(source.version)}", "",
            "using FHIR version '4.0.1'", ""]
    for value_set in source.value_sets:
        out.append(f"valueset {quoted(value_set.name)}: {_string(value_set.url)} version {_string(value_set.version)}")
    if source.value_sets:
        out.append("")
    for name, kind in source.parameters:
        out.append(f"parameter {quoted(name)} {kind} default null")
    if source.parameters:
        out.append("")
    out += ["context Patient", ""]
    for function in source.functions:
        if function.comment:
            out.append(f"// {function.comment}")
        operands = ", ".join(f"{name} {kind}" for name, kind in function.operands)
        out += [f"define function {quoted(function.name)}({operands}):", _indent(text(function.expression)), ""]
    for define in source.defines:
        if define.comment:
            out.append(f"// {define.comment}")
        out += [f"define {quoted(define.name)}:", _indent(text(define.expression)), ""]
    return "\n".join(out).rstrip() + "\n"


def _indent(body: str) -> str:
    return "\n".join("  " + line for line in body.splitlines())
