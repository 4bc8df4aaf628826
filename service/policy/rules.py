"""Load and validate the rule folders in ``rules/`` (format: rules/README.md).

Layout: ``rules/fields.yaml`` is the field dictionary (``fields.py``);
``rules/<policy-id>/<version>/policy.yaml`` holds one policy version (metadata, citation
catalogue, criteria, flags); ``golden.yaml`` beside it holds its golden cases. A file that is
malformed, names a field the dictionary lacks or an unknown source, or repeats an id is refused
with every problem listed as ``file: item: where: problem``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import yaml
from pydantic import Field, ValidationError

from service.errors import field_path
from service.policy.fields import Dictionary, DictionaryError, RuleFileFormat, load_dictionary
from service.policy.logic import Expr, RuleError, fields_of, parse_logic, to_data

DEFAULT_POLICY = "isass-2023-restorative-neurostimulation"


# --- the policy file ---------------------------------------------------------------------------


class _Source(RuleFileFormat):
    reference: str = Field(min_length=1)
    url: str | None = None


class _CitationEntry(RuleFileFormat):
    source: str
    locator: str = Field(min_length=1)


class _RuleEntry(RuleFileFormat):
    id: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]*$")
    title: str = Field(min_length=1)
    requirement: str = Field(min_length=1)
    met_when: Any = None  # criteria
    present_when: Any = None  # flags
    citations: list[_CitationEntry] = Field(min_length=1)


class _OrderCode(RuleFileFormat):
    system: str = Field(pattern=r"^(https?://|urn:)\S+$")
    code: str = Field(pattern=r"^\S+$")


class _PolicyFile(RuleFileFormat):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: str = Field(min_length=1)
    title: str = Field(min_length=1)
    status: Literal["draft", "clinically_reviewed"]
    review_note: str | None = None
    effective_from: datetime.date = Field(strict=False)
    effective_to: datetime.date | None = Field(None, strict=False)
    sources: dict[str, _Source] = Field(min_length=1)
    criteria: list[_RuleEntry] = Field(min_length=1)
    flags: list[_RuleEntry] = []
    orders: list[_OrderCode] = []
    evidence_max_age_months: int | None = Field(None, ge=1, le=120)


@dataclass(frozen=True)
class OrderCode:
    """A code an order (ServiceRequest, DeviceRequest) carries when it asks for what the policy is about."""

    system: str
    code: str

    def to_dict(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code}


@dataclass(frozen=True)
class Citation:
    source: str
    locator: str
    reference: str
    url: str | None = None

    def to_dict(self) -> dict[str, str]:
        cited = {"source": self.source, "locator": self.locator, "reference": self.reference}
        return {**cited, "url": self.url} if self.url else cited


@dataclass(frozen=True)
class Rule:
    """A criterion (met / not met) or a flag (present / absent): its logic and citations."""

    id: str
    title: str
    requirement: str
    logic: Expr
    citations: tuple[Citation, ...]
    fields: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "requirement": self.requirement,
            "logic": to_data(self.logic),
            "fields": list(self.fields),
            "citations": [c.to_dict() for c in self.citations],
        }


@dataclass(frozen=True)
class PolicyVersion:
    id: str
    version: str
    title: str
    status: str
    review_note: str | None
    effective_from: datetime.date
    effective_to: datetime.date | None
    sources: dict[str, dict[str, Any]]
    criteria: tuple[Rule, ...]
    flags: tuple[Rule, ...]
    folder: Path
    orders: tuple[OrderCode, ...] = ()
    evidence_max_age_months: int | None = None  # how old evidence may be before the service date; None: not said

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"

    def in_force(self, day: datetime.date) -> bool:
        return self.effective_from <= day and (self.effective_to is None or day <= self.effective_to)

    def header(self) -> dict[str, Any]:
        """What every result says about the policy version that produced it."""
        return {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "status": self.status,
            "review_note": self.review_note,
            "effective_from": self.effective_from.isoformat(),
            "effective_to": self.effective_to and self.effective_to.isoformat(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.header(),
            "sources": self.sources,
            "criteria": [r.to_dict() for r in self.criteria],
            "flags": [r.to_dict() for r in self.flags],
            "orders": [o.to_dict() for o in self.orders],
            "evidence_max_age_months": self.evidence_max_age_months,
        }


def _problems_of(error: ValidationError, data: Any) -> list[str]:
    problems = []
    for e in error.errors(include_url=False):
        loc = e["loc"]
        item = ""
        if len(loc) >= 2 and loc[0] in ("criteria", "flags") and isinstance(loc[1], int):
            entries = data.get(loc[0]) if isinstance(data, dict) else None
            entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
            if isinstance(entry, dict) and "id" in entry:
                item = f"{entry['id']}: "
        problems.append(f"{item}{field_path(loc)}: {e['msg']}")
    return problems


def _build_rules(kind: str, entries: list[_RuleEntry], sources: dict[str, _Source],
                 seen: set[str], problems: list[str], dictionary: Dictionary) -> tuple[Rule, ...]:
    rules = []
    for entry in entries:
        label = entry.id
        if label in seen:
            problems.append(f"{label}: duplicate id (ids must be unique across criteria and flags)")
        seen.add(label)
        citations = []
        for c_index, citation in enumerate(entry.citations):
            if citation.source not in sources:
                problems.append(f"{label}: citations[{c_index}]: unknown source {citation.source!r}")
                continue
            source = sources[citation.source]
            citations.append(Citation(citation.source, citation.locator, source.reference, source.url))
        logic_key, other_key = ("met_when", "present_when") if kind == "criteria" else ("present_when", "met_when")
        try:
            if getattr(entry, other_key) is not None:
                raise RuleError(f"{other_key}: {kind} say {logic_key}, not {other_key}")
            if getattr(entry, logic_key) is None:
                raise RuleError(f"{logic_key}: missing")
            logic = parse_logic(getattr(entry, logic_key), logic_key, dictionary)
        except RuleError as error:
            problems.append(f"{label}: {error}")
            continue
        rules.append(Rule(entry.id, entry.title, entry.requirement, logic, tuple(citations), tuple(fields_of(logic))))
    return tuple(rules)


def load_policy_file(path: Path, dictionary: Dictionary) -> PolicyVersion:
    """Load one ``policy.yaml``; raise RuleError listing every problem, each prefixed with the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise RuleError(f"{path}: cannot read YAML: {error}") from None
    try:
        parsed = _PolicyFile.model_validate(data)
    except ValidationError as error:
        raise RuleError("\n".join(f"{path}: {p}" for p in _problems_of(error, data))) from None
    problems: list[str] = []
    seen: set[str] = set()
    criteria = _build_rules("criteria", parsed.criteria, parsed.sources, seen, problems, dictionary)
    flags = _build_rules("flags", parsed.flags, parsed.sources, seen, problems, dictionary)
    if path.parent.name != parsed.version or path.parent.parent.name != parsed.id:
        problems.append(
            f"policy: id and version ({parsed.id} {parsed.version}) must match the folders "
            f"<policy-id>/<version>/ ({path.parent.parent.name}/{path.parent.name})"
        )
    orders = tuple(OrderCode(o.system, o.code) for o in parsed.orders)
    if len(set(orders)) != len(orders):
        problems.append("orders: lists a code twice")
    if parsed.effective_to and parsed.effective_to < parsed.effective_from:
        problems.append("effective_to: is before effective_from")
    if problems:
        raise RuleError("\n".join(f"{path}: {p}" for p in problems))
    return PolicyVersion(
        id=parsed.id,
        version=parsed.version,
        title=parsed.title,
        status=parsed.status,
        review_note=parsed.review_note,
        effective_from=parsed.effective_from,
        effective_to=parsed.effective_to,
        sources={k: v.model_dump(exclude_none=True) for k, v in parsed.sources.items()},
        criteria=criteria,
        flags=flags,
        folder=path.parent,
        orders=orders,
        evidence_max_age_months=parsed.evidence_max_age_months,
    )


# --- the catalogue of policies -----------------------------------------------------------------


@dataclass
class Catalog:
    """Every policy version found under a rules folder, newest effective date last, and the field
    dictionary they were checked against."""

    dictionary: Dictionary
    versions: dict[str, list[PolicyVersion]] = field(default_factory=dict)
    configured_default: str = DEFAULT_POLICY

    @property
    def default_policy(self) -> str | None:
        """The policy a case gets when it names none: the configured default when the catalogue
        holds it (``COVERAGE_CRITERIA_DEFAULT_POLICY``, else the ISASS policy), else the only one."""
        if self.configured_default in self.versions:
            return self.configured_default
        return next(iter(self.versions)) if len(self.versions) == 1 else None

    def all_versions(self) -> Iterator[PolicyVersion]:
        for versions in self.versions.values():
            yield from versions

    def in_force(self, policy_id: str, day: datetime.date) -> PolicyVersion | None:
        """The version in force on ``day``: the latest effective one that has not ended."""
        candidates = [v for v in self.versions.get(policy_id, []) if v.in_force(day)]
        return candidates[-1] if candidates else None


def default_rules_dir() -> Path:
    """``COVERAGE_CRITERIA_RULES_DIR``, else the rules shipped in the package, else the checkout's."""
    configured = os.environ.get("COVERAGE_CRITERIA_RULES_DIR")
    if configured:
        return Path(configured)
    package = Path(__file__).resolve().parents[1]
    shipped = package / "rules"
    return shipped if shipped.is_dir() else package.parent / "rules"


def load_catalog(rules_dir: Path | None = None) -> Catalog:
    """Load ``fields.yaml`` and every ``<policy-id>/<version>/policy.yaml``; raise RuleError listing
    all problems."""
    rules_dir = Path(rules_dir) if rules_dir is not None else default_rules_dir()
    if not rules_dir.is_dir():
        raise RuleError(f"{rules_dir}: rules folder not found")
    if not (rules_dir / "fields.yaml").is_file():
        raise RuleError(f"{rules_dir / 'fields.yaml'}: missing (the field dictionary every policy reads from)")
    try:
        dictionary = load_dictionary(rules_dir / "fields.yaml")
    except DictionaryError as error:
        raise RuleError(str(error)) from None
    files = sorted(rules_dir.glob("*/*/policy.yaml"))
    if not files:
        raise RuleError(f"{rules_dir}: no <policy-id>/<version>/policy.yaml found")
    catalog = Catalog(dictionary, configured_default=os.environ.get("COVERAGE_CRITERIA_DEFAULT_POLICY") or DEFAULT_POLICY)
    problems: list[str] = []
    for path in files:
        try:
            version = load_policy_file(path, dictionary)
        except RuleError as error:
            problems.append(str(error))
            continue
        catalog.versions.setdefault(version.id, []).append(version)
    for policy_id, versions in catalog.versions.items():
        versions.sort(key=lambda v: v.effective_from)
        for earlier, later in zip(versions, versions[1:]):
            if earlier.effective_from == later.effective_from:
                problems.append(
                    f"{later.folder / 'policy.yaml'}: effective_from {later.effective_from} "
                    f"is also that of version {earlier.version} of {policy_id}"
                )
    if problems:
        raise RuleError("\n".join(problems))
    return catalog
