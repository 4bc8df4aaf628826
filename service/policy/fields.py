"""The field dictionary, ``rules/fields.yaml``: every case field a rule may read, declared once.

Its neighbours build on it: ``case.py`` makes the strict case model from it, ``rules.py`` checks
each rule's fields, operators and values against it, and ``service/engine/result.py`` words
findings with its labels and enum words. A malformed dictionary is refused at load with every
problem as ``file: field: problem``, like rule files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from decimal import Decimal
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import field_path
from service.policy.sources import SourceError, parse_sources

KINDS = ("boolean", "integer", "number", "enum", "code_list")
# The case's own top-level fields, which no dictionary entry may take.
RESERVED = ("external_id", "policy", "service_date", "priority")
_NAME = r"[a-z][a-z0-9_]*"
_PATH = re.compile(rf"^{_NAME}(\.{_NAME})?$")


class DictionaryError(Exception):
    """The field dictionary is invalid; the message lists every problem found."""


class RuleFileFormat(BaseModel):
    """The base of every model a rules file (fields.yaml, policy.yaml) is read with: strict, and
    any key it does not know is refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class _Section(RuleFileFormat):
    label: str = Field(min_length=1)
    description: str | None = None


class _Field(RuleFileFormat):
    kind: Literal["boolean", "integer", "number", "enum", "code_list"]
    label: str = Field(min_length=1)
    description: str | None = None
    unit: str | None = Field(None, min_length=1)
    minimum: int | float | None = None
    maximum: int | float | None = None
    choices: dict[str, str] | None = None
    pattern: str | None = None
    max_length: int | None = Field(None, ge=1)
    max_items: int | None = Field(None, ge=1)
    evidence_only: bool = False
    fhir: Any = None  # how the field is read from FHIR: service/policy/sources.py checks it


class _File(RuleFileFormat):
    sections: dict[str, _Section] = {}
    fields: dict[str, _Field] = Field(min_length=1)


@dataclass(frozen=True)
class FieldSpec:
    """One case field: where it is (``path``), what it holds, and how reviewers read it."""

    path: str
    kind: str
    label: str
    description: str | None = None
    unit: str | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    choices: dict[str, str] = field(default_factory=dict)  # value -> words
    pattern: str | None = None
    max_length: int | None = None
    max_items: int | None = None
    evidence_only: bool = False
    fhir: Any = None

    @property
    def section(self) -> str | None:
        """The section holding the field; None for a top-level field such as ``diagnosis_codes``."""
        return self.path.split(".")[0] if "." in self.path else None

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]

    def words(self, value: Any) -> str:
        """A documented value as a reviewer reads it: enum values by their words, numbers without
        exponents (1e-05 -> 0.00001), 7.0 as 7, lists joined."""
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, (list, tuple)):
            return ", ".join(self.words(v) for v in value)
        if isinstance(value, str):
            return self.choices.get(value, value)
        return number_words(value)

    def to_dict(self) -> dict[str, Any]:
        """The field as the policies endpoint describes it (no FHIR mapping details)."""
        described: dict[str, Any] = {"path": self.path, "kind": self.kind, "label": self.label}
        for key in ("description", "unit", "minimum", "maximum", "pattern", "max_items"):
            if getattr(self, key) is not None:
                described[key] = getattr(self, key)
        if self.choices:
            described["choices"] = dict(self.choices)
        if self.evidence_only:
            described["evidence_only"] = True
        return described


def plain_decimal(value: float) -> str:
    """A float's shortest round-trip digits without an exponent: 1e-05 -> "0.00001" (Python writes
    an exponent below 1e-4 and from 1e16; reviewers and durable-rules' JSON parser read none)."""
    text = repr(value)
    return format(Decimal(text), "f") if "e" in text else text


def number_words(value: int | float) -> str:
    """A number in plain notation: 7.0 -> "7", 1e-05 -> "0.00001", 2e16 -> "20000000000000000"."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= 2**53:
            return str(int(value))
        return plain_decimal(value)
    return str(value)


@dataclass(frozen=True)
class Dictionary:
    """Every case field rules may read (``fields``, by path) and the sections holding them."""

    fields: dict[str, FieldSpec]
    sections: dict[str, str]  # section -> label
    path: Path | None = None

    def __getitem__(self, path: str) -> FieldSpec:
        return self.fields[path]

    def get(self, path: str) -> FieldSpec | None:
        return self.fields.get(path)

    def in_section(self, section: str) -> list[FieldSpec]:
        return [spec for spec in self.fields.values() if spec.section == section]

    def top_level(self) -> list[FieldSpec]:
        return [spec for spec in self.fields.values() if spec.section is None]


def _field_problems(path: str, entry: _Field, sections: dict[str, _Section]) -> list[str]:
    problems = []
    if not _PATH.match(path):
        problems.append("the path is <section>.<name> or a top-level name, in lower case with underscores")
    elif "." in path and path.split(".")[0] not in sections:
        problems.append(f"section {path.split('.')[0]!r} is not declared under `sections`")
    elif "." not in path and (path in RESERVED or path in sections):
        problems.append(f"{path!r} is already a top-level name of the case")
    numeric = entry.kind in ("integer", "number")
    for key in ("minimum", "maximum"):
        value = getattr(entry, key)
        if value is not None and not numeric:
            problems.append(f"{key}: only integer and number fields have bounds")
        elif entry.kind == "integer" and value is not None and not isinstance(value, int):
            problems.append(f"{key}: an integer field's bound is a whole number")
    if numeric and None not in (entry.minimum, entry.maximum) and entry.minimum > entry.maximum:
        problems.append("minimum is above maximum")
    if entry.kind == "enum":
        if not entry.choices:
            problems.append("choices: an enum field lists its values, each with the words reviewers read")
        else:
            problems += [f"choices: {value!r} is not a lower-case identifier"
                         for value in entry.choices if not re.fullmatch(_NAME, value)]
            problems += [f"choices: {value!r} has no words" for value, words in entry.choices.items()
                         if not words.strip()]
    elif entry.choices is not None:
        problems.append("choices: only enum fields have choices")
    list_keys = ("pattern", "max_length", "max_items")
    if entry.kind != "code_list":
        problems += [f"{key}: only code_list fields have it" for key in list_keys if getattr(entry, key) is not None]
    elif entry.pattern is not None:
        try:
            re.compile(entry.pattern)
        except re.error as error:
            problems.append(f"pattern: not a regular expression ({error})")
    try:
        parse_sources(entry.fhir, entry.kind, entry.choices)
    except SourceError as error:
        problems.append(f"fhir: {error}")
    return problems


def load_dictionary(path: Path) -> Dictionary:
    """Load ``fields.yaml``; raise DictionaryError listing every problem, each prefixed with the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise DictionaryError(f"{path}: cannot read YAML: {error}") from None
    try:
        parsed = _File.model_validate(data)
    except ValidationError as error:
        problems = [f"{path}: {field_path(e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)]
        raise DictionaryError("\n".join(problems)) from None
    problems = [f"{path}: {name}: {problem}"
                for name, entry in parsed.fields.items()
                for problem in _field_problems(name, entry, parsed.sections)]
    if problems:
        raise DictionaryError("\n".join(problems))
    fields = {
        name: FieldSpec(
            path=name,
            kind=entry.kind,
            label=entry.label,
            description=entry.description,
            unit=entry.unit,
            minimum=entry.minimum,
            maximum=entry.maximum,
            choices=dict(entry.choices or {}),
            pattern=entry.pattern,
            max_length=entry.max_length,
            max_items=entry.max_items,
            evidence_only=entry.evidence_only,
            fhir=entry.fhir,
        )
        for name, entry in parsed.fields.items()
    }
    return Dictionary(fields, {name: s.label for name, s in parsed.sections.items()}, path)
