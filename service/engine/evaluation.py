"""Evaluate a case: validate it, pick the policy version in force, run the rules, build the result.

This is the one entry point the API and the CLI share, so both give the same results and the same
field-level errors.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import Any, Iterable

from pydantic import ValidationError

from service.engine.durable import RulesEngine
from service.engine.result import ResultBuilder
from service.errors import InvalidInput, field_path
from service.policy.case import CaseBase, case_model
from service.policy.compiler import CompiledPolicy, compile_policy
from service.policy.rules import Catalog, PolicyVersion, load_catalog

# Where a value came from, by field path, when it was read from FHIR: {"reference", "date"}.
Provenance = dict[str, dict[str, str]]


def _documented(case: CaseBase, fields: Iterable[str]) -> dict[str, Any]:
    """The documented values of ``fields`` by dotted path; missing and null fields are left out."""
    values = {}
    for path in fields:
        value = case.value(path)
        if value is not None:
            values[path] = value
    return values


def _facts(values: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The facts the engine is given: the documented values of ``fields``, nested as in the case."""
    facts: dict[str, Any] = {}
    for path in fields:
        if path in values:
            section, _, name = path.rpartition(".")
            (facts.setdefault(section, {}) if section else facts)[name] = values[path]
    return facts


class Evaluator:
    def __init__(self, catalog: Catalog, engine: RulesEngine | None = None):
        self.catalog = catalog
        self.dictionary = catalog.dictionary
        self.case_model = case_model(catalog.dictionary)
        self.engine = engine or RulesEngine()
        self._compiled: dict[str, CompiledPolicy] = {}
        self._builders: dict[str, ResultBuilder] = {}
        for version in catalog.all_versions():
            compiled = compile_policy(version)
            self.engine.register(compiled)
            self._compiled[version.key] = compiled
            self._builders[version.key] = ResultBuilder(version, catalog.dictionary)

    @classmethod
    def from_rules_dir(cls, rules_dir: Path | str | None = None) -> "Evaluator":
        return cls(load_catalog(Path(rules_dir) if rules_dir else None))

    # --- validation ---------------------------------------------------------------------------

    def parse(self, payload: Any, prefix: str = "",
              today: datetime.date | None = None) -> tuple[CaseBase, PolicyVersion, datetime.date]:
        """Validate a case and find the policy version in force on its service date.

        A case without a service date is evaluated for ``today`` (default: the current date).
        """
        try:
            case = self.case_model.model_validate(payload)
        except ValidationError as error:
            raise InvalidInput.from_validation_error(error, prefix) from None
        policy_id = case.policy or self.catalog.default_policy
        known = ", ".join(self.catalog.versions)
        if policy_id is None:
            raise InvalidInput.one(field_path(["policy"], prefix),
                                   f"Field required: this service knows several policies ({known})", "missing")
        if policy_id not in self.catalog.versions:
            raise InvalidInput.one(field_path(["policy"], prefix),
                                   f"Unknown policy {policy_id!r}; known: {known}", "unknown_policy")
        day = case.service_date or today or datetime.date.today()
        version = self.catalog.in_force(policy_id, day)
        if version is None:
            raise InvalidInput.one(field_path(["service_date"], prefix),
                                   f"No version of policy {policy_id} is in force on {day.isoformat()}",
                                   "no_policy_in_force")
        return case, version, day

    # --- evaluation ---------------------------------------------------------------------------

    def evaluate_parsed(self, case: CaseBase, version: PolicyVersion, day: datetime.date,
                        provenance: Provenance | None = None) -> dict[str, Any]:
        compiled = self._compiled[version.key]
        values = _documented(case, self.dictionary.fields)
        fired = self.engine.run(compiled.name, _facts(values, compiled.fields))
        return self._builders[version.key].build(
            case.external_id,
            values,
            compiled.node_truths(fired),
            provenance=provenance or {},
            evaluation_id=str(uuid.uuid4()),
            evaluated_at=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            service_date=day.isoformat(),
        )

    def evaluate(self, payload: Any, today: datetime.date | None = None,
                 provenance: Provenance | None = None) -> dict[str, Any]:
        """Evaluate one case (parsed JSON); raise InvalidInput naming each offending field.

        A case without a service date is evaluated for ``today`` (default: the current date).
        ``provenance`` names the FHIR resource behind each value read from FHIR; its evidence
        items then carry ``source``.
        """
        return self.evaluate_parsed(*self.parse(payload, today=today), provenance=provenance)

    def validate_batch(self, payloads: list[Any], today: datetime.date | None = None) -> None:
        """Validate every case, keeping none; raise InvalidInput naming every offending field
        (prefixed ``[i]``). A batch is validated whole before any case is evaluated; validated
        cases are not kept (each is validated again as it is evaluated, ~2 % of its cost; kept,
        100,000 of them took 530 MiB)."""
        problems = []
        for index, payload in enumerate(payloads):
            try:
                self.parse(payload, prefix=f"[{index}]", today=today)
            except InvalidInput as error:
                problems.append(error)
        if problems:
            raise InvalidInput.combined(problems)

    def evaluate_version(self, version: PolicyVersion, payload: Any) -> dict[str, Any]:
        """Evaluate against a given version whatever the service date (golden cases use this)."""
        case, _, _ = self.parse({"policy": version.id, "service_date": version.effective_from.isoformat(), **payload})
        return self.evaluate_parsed(case, version, case.service_date)

    # --- policies -----------------------------------------------------------------------------

    def policies(self) -> list[dict[str, Any]]:
        return [
            {
                "id": policy_id,
                "title": versions[-1].title,
                "default": policy_id == self.catalog.default_policy,
                "versions": [
                    {k: v.header()[k] for k in ("version", "status", "effective_from", "effective_to")}
                    for v in versions
                ],
            }
            for policy_id, versions in self.catalog.versions.items()
        ]

    def describe_policy(self, policy_id: str) -> dict[str, Any] | None:
        versions = self.catalog.versions.get(policy_id)
        if versions is None:
            return None
        read = dict.fromkeys(path for v in versions for r in (*v.criteria, *v.flags) for path in r.fields)
        return {
            "id": policy_id,
            "title": versions[-1].title,
            "default": policy_id == self.catalog.default_policy,
            "versions": [v.to_dict() for v in versions],
            "fields": [self.dictionary[path].to_dict() for path in read],
        }
