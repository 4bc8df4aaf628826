"""What changed between two versions of a policy, in words a policy owner reads.

``coverage-criteria rules diff OLD NEW`` compares two policy versions (each a version folder, its
``policy.yaml``, or a rules folder, whose policies are compared at their newest versions):
criteria and flags added or removed, and for those in both, a changed title, requirement,
threshold (same logic, other values), logic, or citations; and the policy's own status, dates
and title.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from service.policy.logic import OPERATORS, AnyOf, Comparison, Expr, Not
from service.policy.rules import (
    PolicyVersion,
    Rule,
    RuleError,
    default_rules_dir,
    load_catalog,
    load_policy_file,
)
from service.policy.fields import Dictionary, DictionaryError, FieldSpec, load_dictionary

Fields = Callable[[str], "FieldSpec"]  # a field's path -> its dictionary entry


@dataclass(frozen=True)
class Change:
    policy: str
    item: str  # "policy", "criterion" or "flag"
    id: str
    change: str  # added | removed | title | requirement | threshold | logic | citations | status | …
    words: str  # one sentence for a policy owner

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _operator_words(operator: str) -> str:
    if operator == "equals":
        return "is"
    words = OPERATORS[operator][0]
    return f"is {words}" if operator in ("not_equals", "one_of", "none_of") else words


def comparison_words(node: Comparison, fields: Fields) -> str:
    spec = fields(node.field)
    return f"{spec.label} {_operator_words(node.operator)} {spec.words(node.value)}"


def logic_words(expr: Expr, fields: Fields) -> str:
    """A rule's logic in words: ``either A or B``, ``A and B``, ``not (A)``."""
    if isinstance(expr, Comparison):
        return comparison_words(expr, fields)
    if isinstance(expr, Not):
        return f"not ({logic_words(expr.part, fields)})"
    parts = [logic_words(p, fields) if isinstance(p, Comparison) else f"({logic_words(p, fields)})"
             for p in expr.parts]
    joined = ", ".join(parts[:-1])
    return f"either {joined} or {parts[-1]}" if isinstance(expr, AnyOf) else f"{joined} and {parts[-1]}"


def _same_shape(old: Expr, new: Expr) -> bool:
    """Same combinators, fields and operators: the logic is the same but for its values."""
    if type(old) is not type(new):
        return False
    if isinstance(old, Comparison):
        return (old.field, old.operator) == (new.field, new.operator)
    if isinstance(old, Not):
        return _same_shape(old.part, new.part)
    return len(old.parts) == len(new.parts) and all(map(_same_shape, old.parts, new.parts))


def _comparisons(expr: Expr) -> list[Comparison]:
    if isinstance(expr, Comparison):
        return [expr]
    if isinstance(expr, Not):
        return _comparisons(expr.part)
    return [c for part in expr.parts for c in _comparisons(part)]


def _citation_words(rule: Rule) -> dict[tuple[str, str], str]:
    return {(c.source, c.locator): f"{c.source} ({c.locator})" for c in rule.citations}


def _rule_changes(policy: str, item: str, old: Rule, new: Rule, fields: Fields) -> list[Change]:
    changes = []

    def add(change: str, words: str) -> None:
        changes.append(Change(policy, item, new.id, change, words))

    if old.title != new.title:
        add("title", f'title was "{old.title}", now "{new.title}"')
    if old.requirement != new.requirement:
        add("requirement", f'requirement was "{old.requirement}", now "{new.requirement}"')
    if old.logic != new.logic:
        if _same_shape(old.logic, new.logic):
            for before, after in zip(_comparisons(old.logic), _comparisons(new.logic)):
                if before.value != after.value:
                    add("threshold", f"{comparison_words(before, fields)} becomes "
                                     f"{_operator_words(after.operator)} {fields(after.field).words(after.value)}")
        else:
            add("logic", f"{item} {'met' if item == 'criterion' else 'present'} when "
                         f"{logic_words(old.logic, fields)}; now when {logic_words(new.logic, fields)}")
    old_citations, new_citations = _citation_words(old), _citation_words(new)
    cited = [words for key, words in new_citations.items() if key not in old_citations]
    dropped = [words for key, words in old_citations.items() if key not in new_citations]
    if cited or dropped:
        parts = ([f"now cites {', '.join(cited)}"] if cited else []) + (
            [f"no longer cites {', '.join(dropped)}"] if dropped else [])
        add("citations", "; ".join(parts))
    return changes


def _rules_changes(policy: str, item: str, old: tuple[Rule, ...], new: tuple[Rule, ...],
                   fields: Fields) -> list[Change]:
    old_by_id, new_by_id = {r.id: r for r in old}, {r.id: r for r in new}
    changes = []
    for rule in new:
        if rule.id not in old_by_id:
            changes.append(Change(policy, item, rule.id, "added",
                                  f'{item} added: "{rule.title}": {rule.requirement} '
                                  f"({'met' if item == 'criterion' else 'present'} when "
                                  f"{logic_words(rule.logic, fields)})"))
        else:
            changes += _rule_changes(policy, item, old_by_id[rule.id], rule, fields)
    for rule in old:
        if rule.id not in new_by_id:
            changes.append(Change(policy, item, rule.id, "removed", f'{item} removed: "{rule.title}"'))
    return changes


def diff_versions(old: PolicyVersion, new: PolicyVersion, fields: Fields) -> list[Change]:
    """Every change from ``old`` to ``new``: the policy's own, then its criteria's, then its flags'."""
    changes = []
    for name in ("version", "title", "status", "review_note", "effective_from", "effective_to"):
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            words = name.replace("_", " ")
            changes.append(Change(new.id, "policy", new.id, name,
                                  f"{words} was {before or 'not set'}, now {after or 'not set'}"))
    changes += _rules_changes(new.id, "criterion", old.criteria, new.criteria, fields)
    changes += _rules_changes(new.id, "flag", old.flags, new.flags, fields)
    return changes


def _dictionary_for(policy_file: Path) -> Dictionary:
    """The field dictionary of the rules folder holding ``<policy-id>/<version>/policy.yaml``,
    else the bundled one."""
    beside = policy_file.resolve().parent.parent.parent / "fields.yaml"
    try:
        return load_dictionary(beside if beside.is_file() else default_rules_dir() / "fields.yaml")
    except DictionaryError as error:
        raise RuleError(str(error)) from None


def load_versions(path: Path) -> tuple[dict[str, PolicyVersion], Dictionary]:
    """The policy versions to compare at ``path`` (a ``policy.yaml``, a version folder holding one,
    or a rules folder: each of its policies at its newest version), and their field dictionary."""
    path = Path(path)
    policy_file = path if path.is_file() else path / "policy.yaml"
    if policy_file.is_file():
        dictionary = _dictionary_for(policy_file)
        version = load_policy_file(policy_file, dictionary)
        return {version.id: version}, dictionary
    if not path.is_dir():
        raise RuleError(f"{path}: not found (give a version folder, its policy.yaml, or a rules folder)")
    catalog = load_catalog(path)
    return {policy_id: versions[-1] for policy_id, versions in catalog.versions.items()}, catalog.dictionary


def diff_paths(old_path: Path, new_path: Path) -> list[Change]:
    (old, old_fields), (new, new_fields) = load_versions(old_path), load_versions(new_path)

    def fields(path: str) -> FieldSpec:  # each side's fields are in its dictionary (checked at load)
        return new_fields.get(path) or old_fields[path]

    if len(old) == 1 and len(new) == 1:  # two versions, whatever their ids (a payer's copy too)
        return diff_versions(next(iter(old.values())), next(iter(new.values())), fields)
    changes = []
    for policy_id, version in new.items():
        if policy_id in old:
            changes += diff_versions(old[policy_id], version, fields)
        else:
            changes.append(Change(policy_id, "policy", policy_id, "added",
                                  f"policy added: {version.title} (version {version.version})"))
    changes += [Change(policy_id, "policy", policy_id, "removed", f"policy removed: {version.title}")
                for policy_id, version in old.items() if policy_id not in new]
    return changes


def report(changes: list[Change], old_path: Path, new_path: Path) -> str:
    """The changes for people, one line each, grouped by policy."""
    if not changes:
        return f"No differences between {old_path} and {new_path}.\n"
    lines, policy = [], None
    for change in changes:
        if change.policy != policy:
            policy = change.policy
            lines.append(f"{policy}:")
        subject = "" if change.item == "policy" else f"{change.id}: "
        lines.append(f"  {subject}{change.words}")
    return "\n".join(lines) + "\n"
