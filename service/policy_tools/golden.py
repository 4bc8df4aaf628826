"""Golden cases: example cases with their expected findings, kept beside each policy version.

``golden.yaml`` in a version folder lists cases and what they must give; ``coverage-criteria rules
check`` and the test suite run them, so a policy owner can test an edit without writing code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import InvalidInput, field_path
from service.engine.evaluation import Evaluator
from service.policy.rules import PolicyVersion, RuleError

CriterionStatus = Literal["met", "not_met", "insufficient_information"]
FlagStatus = Literal["present", "absent", "unknown"]


class _Expect(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    outcome: Literal["all_criteria_met", "criteria_not_met", "information_missing"] | None = None
    criteria: dict[str, CriterionStatus] = {}
    flags: dict[str, FlagStatus] = {}
    missing: dict[str, list[str]] = {}
    missing_information: list[str] | None = None


class _GoldenCase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1)
    case: dict[str, Any]
    expect: _Expect


class _GoldenFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    cases: list[_GoldenCase] = Field(min_length=1)


@dataclass(frozen=True)
class GoldenOutcome:
    version: PolicyVersion
    name: str
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems


def load_golden(version: PolicyVersion) -> list[_GoldenCase]:
    path = version.folder / "golden.yaml"
    if not path.exists():
        raise RuleError(f"{path}: missing (every policy version keeps its golden cases beside it)")
    try:
        parsed = _GoldenFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as error:
        raise RuleError(f"{path}: cannot read YAML: {error}") from None
    except ValidationError as error:
        raise RuleError("\n".join(f"{path}: {field_path(e['loc'])}: {e['msg']}" for e in error.errors())) from None
    criteria = {r.id for r in version.criteria}
    flags = {r.id for r in version.flags}
    problems, names = [], set()
    for golden in parsed.cases:
        if golden.name in names:
            problems.append(f"{golden.name}: duplicate golden case name")
        names.add(golden.name)
        problems += [f"{golden.name}: expect.criteria: unknown criterion {i}" for i in golden.expect.criteria if i not in criteria]
        problems += [f"{golden.name}: expect.flags: unknown flag {i}" for i in golden.expect.flags if i not in flags]
        problems += [f"{golden.name}: expect.missing: unknown criterion or flag {i}"
                     for i in golden.expect.missing if i not in criteria | flags]
    if problems:
        raise RuleError("\n".join(f"{path}: {p}" for p in problems))
    return parsed.cases


def _compare(expected: _Expect, result: dict[str, Any]) -> list[str]:
    problems = []
    if expected.outcome and result["summary"]["outcome"] != expected.outcome:
        problems.append(f"outcome is {result['summary']['outcome']}, expected {expected.outcome}")
    for kind, wanted in (("criteria", expected.criteria), ("flags", expected.flags)):
        actual = {item["id"]: item for item in result[kind]}
        for item_id, status in wanted.items():
            if actual[item_id]["status"] != status:
                problems.append(f"{item_id} is {actual[item_id]['status']}, expected {status} "
                                f"({actual[item_id]['reason']})")
    items = {item["id"]: item for item in (*result["criteria"], *result["flags"])}
    for item_id, fields in expected.missing.items():
        if items[item_id]["missing"] != fields:
            problems.append(f"{item_id} misses {items[item_id]['missing']}, expected {fields}")
    if expected.missing_information is not None and result["missing_information"] != expected.missing_information:
        problems.append(f"missing_information is {result['missing_information']}, "
                        f"expected {expected.missing_information}")
    return problems


def run_golden(evaluator: Evaluator) -> list[GoldenOutcome]:
    """Run every golden case of every policy version; raise RuleError if a golden file is invalid."""
    outcomes, errors = [], []
    for version in evaluator.catalog.all_versions():
        try:
            cases = load_golden(version)
        except RuleError as error:
            errors.append(str(error))
            continue
        for golden in cases:
            payload = {"external_id": f"golden:{golden.name}"[:128], **golden.case}
            try:
                result = evaluator.evaluate_version(version, payload)
                problems = _compare(golden.expect, result)
            except InvalidInput as error:
                problems = [f"the case is invalid: {error}"]
            outcomes.append(GoldenOutcome(version, golden.name, tuple(problems)))
    if errors:
        raise RuleError("\n".join(errors))
    return outcomes
