"""The pre-population Library of a policy version, and the ValueSets its retrieves use, as FHIR R4
resources: the Library's content carries the CQL text **and** its ELM (``application/elm+json``),
both rendered from one expression tree (``prefill``), so neither is written or edited by hand.

Canonical URLs live under the FHIR base the client called (``{base}/Library/<name>``,
``{base}/ValueSet/<id>``); versions follow the content: the Library's is the policy version and
the first 8 hex digits of its CQL's SHA-256, a ValueSet's the digest of its codes, so a change of
``rules/fields.yaml`` never serves different logic under a version a client may have cached.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from service.fhir.dtr import cql, elm
from service.fhir.dtr.common import SERVICE_DATE, common_defines, common_functions
from service.fhir.dtr.expr import LibrarySource, ValueSetDef
from service.fhir.dtr.prefill import FieldLogic
from service.policy.sources import Code, Source

LIBRARY_TYPE = "http://terminology.hl7.org/CodeSystem/library-type"
ELM_JSON, CQL_TEXT = "application/elm+json", "text/cql"


@dataclass(frozen=True)
class Prepopulation:
    """A generated library: its CQL and ELM, the FHIR Library and ValueSets, and the define that
    gives each field's value (``defines[path]``)."""

    name: str
    url: str
    version: str
    cql: str
    elm: dict[str, Any]
    library: dict[str, Any]
    value_sets: tuple[dict[str, Any], ...]
    defines: dict[str, str]

    @property
    def canonical(self) -> str:
        return f"{self.url}|{self.version}"

    def expression(self, path: str, answer: bool = False) -> str:
        """The ``text/cql`` expression of a field's value: ``"Library"."path"`` (with ``answer``,
        a yes/no field's Yes / No coding: ``"Library"."path answer"``)."""
        define = self.defines[path] + (" answer" if answer else "")
        return f'{cql.quoted(self.name)}.{cql.quoted(define)}'


def library_name(policy_id: str) -> str:
    """A CQL identifier from a policy id: ``isass-2023-x`` -> ``Isass2023XPrepopulation``."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", policy_id) if part) + "Prepopulation"


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]


def value_set_id(path: str, index: int) -> str:
    return re.sub(r"[^A-Za-z0-9\-.]", "-", path) + ("-codes" if index == 0 else f"-codes-{index + 1}")


def prepopulation(dictionary: Any, sources: dict[str, tuple[Source, ...]], paths: Iterable[str], *, policy_id: str,
                  policy_version: str, title: str, base: str, status: str = "active") -> Prepopulation:
    """The Library pre-populating ``paths`` (a field without ``fhir:`` sources still reads earlier
    answers to its linkId), under the FHIR base ``base``."""
    name = library_name(policy_id)
    value_sets: dict[str, tuple[ValueSetDef, tuple[Code, ...], str]] = {}

    def register(path: str, index: int, codes: tuple[Code, ...]) -> ValueSetDef:
        identifier = value_set_id(path, index)
        label = dictionary.fields[path].label
        definition = ValueSetDef(f"{label} codes" + ("" if index == 0 else f" {index + 1}"),
                                 f"{base}/ValueSet/{identifier}", _digest([str(c) for c in codes]))
        value_sets[identifier] = (definition, codes, label)
        return definition

    source = LibrarySource(name=name, version=policy_version, parameters=[(SERVICE_DATE, "Date")],
                           functions=common_functions(), defines=common_defines())
    defines: dict[str, str] = {}
    for path in paths:
        logic = FieldLogic(dictionary.fields[path], sources.get(path, ()), register)
        source.defines += logic.defines()
        defines[path] = path
    source.value_sets = [definition for definition, _, _ in value_sets.values()]
    comment = (f"Pre-population of {title}.\nGenerated from the fhir: declarations of rules/fields.yaml "
               "by service/fhir/dtr; do not edit.")
    draft = cql.library(source, comment)
    version = f"{policy_version}-{_digest(draft)}"
    source.version = version
    text = cql.library(source, comment)
    tree = elm.library(source)
    url = f"{base}/Library/{name}"
    resources = tuple(_value_set(identifier, definition, codes, label)
                      for identifier, (definition, codes, label) in value_sets.items())
    library = {
        "resourceType": "Library", "id": name, "url": url, "version": version, "name": name,
        "title": f"{title}: pre-population", "status": status,
        "type": {"coding": [{"system": LIBRARY_TYPE, "code": "logic-library"}]},
        "description": "Reads, from the patient's chart, the value of each field the questionnaire asks, as the "
                       "payer's own FHIR intake reads it (latest on or before the service date). Generated from "
                       "the field dictionary; pre-filled answers support a reviewer and are not a coverage decision.",
        "parameter": [{"name": SERVICE_DATE, "use": "in", "min": 0, "max": "1", "type": "date"}]
        + [{"name": defines[p], "use": "out", "min": 0, "max": "*" if dictionary.fields[p].kind == "code_list" else "1",
            "type": _PARAMETER_TYPE[dictionary.fields[p].kind]} for p in defines],
        "relatedArtifact": [{"type": "depends-on", "resource": f"{vs['url']}|{vs['version']}"} for vs in resources],
        "dataRequirement": _data_requirements(source),
        "content": [{"contentType": CQL_TEXT, "data": base64.b64encode(text.encode()).decode()},
                    {"contentType": ELM_JSON, "data": base64.b64encode(_compact(tree)).decode()}],
    }
    if not resources:
        del library["relatedArtifact"]
    return Prepopulation(name, url, version, text, tree, library, resources, defines)


def _compact(tree: dict[str, Any]) -> bytes:
    return json.dumps(tree, separators=(",", ":")).encode()


_PARAMETER_TYPE = {"boolean": "boolean", "integer": "integer", "number": "decimal", "enum": "string",
                   "code_list": "string"}


def _value_set(identifier: str, definition: ValueSetDef, codes: tuple[Code, ...], label: str) -> dict[str, Any]:
    include: dict[str, list[dict[str, str]]] = {}
    for code in codes:
        include.setdefault(code.system, []).append({"code": str(code.code)})
    return {
        "resourceType": "ValueSet", "id": identifier, "url": definition.url, "version": definition.version,
        "name": re.sub(r"[^A-Za-z0-9]", "", label.title()) + "Codes", "title": definition.name, "status": "active",
        "description": f"The codes the field dictionary reads {label} from (rules/fields.yaml).",
        "compose": {"include": [{"system": system, "concept": concepts} for system, concepts in include.items()]},
        "expansion": {"timestamp": _EXPANDED, "total": len(codes),
                      "contains": [{"system": c.system, "code": str(c.code)} for c in codes]},
    }


# Expansions are computed from the declarations (nothing external): stamped once per process.
_EXPANDED = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def _data_requirements(source: LibrarySource) -> list[dict[str, Any]]:
    """What the library reads: each retrieve of its ELM (type and value set), once."""
    seen: dict[tuple[str, str | None], dict[str, Any]] = {}
    by_name = {v.name: v for v in source.value_sets}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("type") == "Retrieve":
                resource = value["dataType"].rpartition("}")[2]
                codes = value.get("codes", {}).get("name")
                requirement: dict[str, Any] = {"type": resource}
                if codes:
                    vs = by_name[codes]
                    requirement["codeFilter"] = [{"path": "code", "valueSet": f"{vs.url}|{vs.version}"}]
                seen.setdefault((resource, codes), requirement)
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    for define in source.defines:
        walk(elm.node(define.expression))
    return list(seen.values())
