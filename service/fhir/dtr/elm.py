"""ELM (the JSON form of CQL that engines execute, https://cql.hl7.org/elm.html) rendered from the
expression tree of ``expr``: the same tree ``cql`` renders as text, so the library's two contents
say the same thing. Only the node types the tree has are produced; each is plain ELM r1 as the
CQL-to-ELM translator writes it for FHIR 4.0.1 without FHIRHelpers (primitives read as ``.value``).
"""

from __future__ import annotations

from typing import Any

from service.fhir.dtr.expr import (
    DATE_PARTS,
    DATETIME_PARTS,
    FHIR_NS,
    OPERATORS,
    SYSTEM_NS,
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

_LITERAL_TYPES = {bool: "Boolean", int: "Integer", float: "Decimal", str: "String"}


def _named(type_name: str, system: bool = False) -> dict[str, Any]:
    return {"type": "NamedTypeSpecifier", "name": f"{{{SYSTEM_NS if system else FHIR_NS}}}{type_name}"}


def node(n: Node) -> dict[str, Any]:
    """The ELM of one expression."""
    if isinstance(n, Lit):
        if n.value is None:
            return {"type": "Null"}
        kind = _LITERAL_TYPES[type(n.value)]
        text = ("true" if n.value else "false") if kind == "Boolean" else str(n.value)
        return {"type": "Literal", "valueType": f"{{{SYSTEM_NS}}}{kind}", "value": text}
    if isinstance(n, Qty):
        return {"type": "Quantity", "value": n.value, "unit": n.unit}
    if isinstance(n, CodeLit):
        return {"type": "Instance", "classType": f"{{{SYSTEM_NS}}}Code", "element": [
            {"name": name, "value": node(Lit(value))} for name, value in
            (("code", n.code), ("system", n.system), ("display", n.display))]}
    if isinstance(n, Ref):
        return {"type": "ExpressionRef", "name": n.name}
    if isinstance(n, Param):
        return {"type": "ParameterRef", "name": n.name}
    if isinstance(n, Alias):
        return {"type": "QueryLetRef" if n.let else "AliasRef", "name": n.name}
    if isinstance(n, Operand):
        return {"type": "OperandRef", "name": n.name}
    if isinstance(n, ValueSetRef):
        return {"type": "ValueSetRef", "name": n.name}
    if isinstance(n, Prop):
        if isinstance(n.source, Alias) and not n.source.let:
            return {"type": "Property", "path": n.path, "scope": n.source.name}
        return {"type": "Property", "path": n.path, "source": node(n.source)}
    if isinstance(n, Op):
        return _operator(n)
    if isinstance(n, Call):
        return {"type": "FunctionRef", "name": n.name, "operand": [node(a) for a in n.args]}
    if isinstance(n, Retrieve):
        elm: dict[str, Any] = {"type": "Retrieve", "dataType": f"{{{FHIR_NS}}}{n.resource}",
                               "templateId": f"http://hl7.org/fhir/StructureDefinition/{n.resource}"}
        if n.codes is not None:
            elm.update(codeProperty="code", codeComparator="in", codes=node(n.codes))
        return elm
    if isinstance(n, Query):
        return _query(n)
    if isinstance(n, TupleOf):
        return {"type": "Tuple", "element": [{"name": name, "value": node(v)} for name, v in n.fields]}
    if isinstance(n, ListOf):
        return {"type": "List", "element": [node(i) for i in n.items]}
    if isinstance(n, Is):
        return {"type": "Is", "operand": node(n.operand), "isTypeSpecifier": _named(n.fhir_type)}
    if isinstance(n, As):
        return {"type": "As", "operand": node(n.operand), "asTypeSpecifier": _named(n.fhir_type), "strict": False}
    if isinstance(n, If):
        return {"type": "If", "condition": node(n.condition), "then": node(n.then), "else": node(n.otherwise)}
    if isinstance(n, Case):
        elm = {"type": "Case", "caseItem": [{"when": node(w), "then": node(t)} for w, t in n.whens],
               "else": node(n.otherwise)}
        return elm if n.comparand is None else {**elm, "comparand": node(n.comparand)}
    raise TypeError(f"no ELM for {type(n).__name__}")


def _operator(n: Op) -> dict[str, Any]:
    elm_type, style, _ = OPERATORS[n.op]
    elm: dict[str, Any] = {"type": elm_type}
    args = [node(a) for a in n.args]
    if style == "operand":
        elm["operand"] = args[0]
    elif style == "operands":
        elm["operand"] = args
    elif style == "source":
        elm["source"] = args[0]
    elif style == "round":
        elm.update(operand=args[0], precision=args[1])
    elif style == "parts":
        names = DATE_PARTS if n.op == "Date" else DATETIME_PARTS
        elm.update(dict(zip(names, args)))
    if n.precision:
        elm["precision"] = n.precision
    return elm


def _query(n: Query) -> dict[str, Any]:
    elm: dict[str, Any] = {"type": "Query", "source": [{"alias": n.alias, "expression": node(n.source)}]}
    if n.lets:
        elm["let"] = [{"identifier": name, "expression": node(v)} for name, v in n.lets]
    if n.where is not None:
        elm["where"] = node(n.where)
    if n.ret is not None:
        elm["return"] = {"distinct": False, "expression": node(n.ret)}
    if n.sort_by is not None:
        elm["sort"] = {"by": [{"type": "ByColumn", "direction": "asc", "path": n.sort_by}]}
    return elm


def library(source: LibrarySource) -> dict[str, Any]:
    """The ELM JSON of a whole library (``{"library": ...}``), context Patient."""
    statements: list[dict[str, Any]] = [{
        "name": "Patient", "context": "Patient",
        "expression": {"type": "SingletonFrom", "operand": node(Retrieve("Patient"))}}]
    for function in source.functions:
        statements.append({
            "type": "FunctionDef", "name": function.name, "context": "Patient", "accessLevel": "Public",
            "operand": [{"name": name, "operandTypeSpecifier": _type(kind)} for name, kind in function.operands],
            "expression": node(function.expression)})
    for define in source.defines:
        statements.append({"name": define.name, "context": "Patient", "accessLevel": "Public",
                           "expression": node(define.expression)})
    body: dict[str, Any] = {
        "identifier": {"id": source.name, "version": source.version},
        "schemaIdentifier": {"id": "urn:hl7-org:elm", "version": "r1"},
        "usings": {"def": [{"localIdentifier": "System", "uri": SYSTEM_NS},
                           {"localIdentifier": "FHIR", "uri": FHIR_NS, "version": "4.0.1"}]},
        "contexts": {"def": [{"name": "Patient"}]},
        "statements": {"def": statements},
    }
    if source.parameters:
        # default null: cql-execution 3 hands out the parameter's definition for an unset one without a default
        body["parameters"] = {"def": [{"name": name, "accessLevel": "Public", "parameterTypeSpecifier": _type(kind),
                                       "default": {"type": "Null"}}
                                      for name, kind in source.parameters]}
    if source.value_sets:
        body["valueSets"] = {"def": [{"name": v.name, "id": v.url, "version": v.version, "accessLevel": "Public"}
                                     for v in source.value_sets]}
    return {"library": body}


def _type(kind: str) -> dict[str, Any]:
    """A type named as CQL writes it: ``Date``, ``DateTime`` (System) or ``FHIR.X``."""
    if kind.startswith("FHIR."):
        return _named(kind.removeprefix("FHIR."))
    if kind.startswith("List<") and kind.endswith(">"):
        return {"type": "ListTypeSpecifier", "elementType": _type(kind[5:-1])}
    return _named(kind, system=True)
