"""How the review page words a stored result: statuses as a symbol and a word (never colour
alone), field paths by their labels, values as reviewers read them, dates without ambiguity, and
citations with the link their source declares."""

from __future__ import annotations

import datetime
from typing import Any

from service.policy.fields import number_words
from service.policy.rules import Catalog, PolicyVersion

# status -> (symbol, word, css class); the symbol and word carry the meaning, the class only styles it
STATUSES = {
    "met": ("✓", "Met", "met"),
    "not_met": ("✗", "Not met", "not-met"),
    "insufficient_information": ("?", "Insufficient information", "insufficient"),
    "present": ("!", "Present", "present"),
    "absent": ("–", "Absent", "absent"),
    "unknown": ("?", "Unknown", "insufficient"),
}
OUTCOMES = {
    "all_criteria_met": "All criteria met",
    "criteria_not_met": "At least one criterion not met",
    "information_missing": "Information missing: no criterion is unmet, at least one lacks documentation",
}
_FLAG_ORDER = {"present": 0, "unknown": 1, "absent": 2}


class ResultWords:
    """The words for one catalog's fields (its field dictionary, rules/fields.yaml) and sources;
    the templates call its methods."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.dictionary = catalog.dictionary

    def label(self, path: str) -> str:
        spec = self.dictionary.get(path)
        return spec.label if spec is not None else path

    def value(self, path: str | None, value: Any) -> str:
        """A documented value in words: yes/no, an enum value by its words, numbers in full."""
        if value is None:
            return "not documented"
        spec = self.dictionary.get(path or "")
        if spec is not None:
            return spec.words(value)
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, list):
            return ", ".join(self.value(None, item) for item in value)
        if isinstance(value, (int, float)):
            return number_words(value)
        return str(value)

    def source_url(self, policy: dict[str, Any], source: str) -> str | None:
        """The link a policy version's source declares (only http and https links)."""
        version = self.policy_version(policy)
        url = version.sources.get(source, {}).get("url") if version else None
        return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None

    def policy_version(self, policy: dict[str, Any]) -> PolicyVersion | None:
        for version in self.catalog.versions.get(policy.get("id"), []):
            if version.version == policy.get("version"):
                return version
        return None


def status(value: str) -> tuple[str, str, str]:
    return STATUSES.get(value, ("?", value.replace("_", " "), "insufficient"))


def flags_in_reading_order(flags: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Present flags first, then unknown, then absent; the policy's order within each."""
    return sorted(flags, key=lambda flag: _FLAG_ORDER.get(flag.get("status"), 1))


def moment(value: str | None) -> str:
    """``2026-11-22T03:19:14Z`` -> ``22 Nov 2026, 03:19 UTC``."""
    if not value:
        return "—"
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(datetime.UTC)
    except ValueError:
        return value
    return f"{parsed.day} {parsed:%b %Y, %H:%M} UTC"


def day(value: str | None) -> str:
    """``2026-12-01`` -> ``1 Dec 2026``."""
    if not value:
        return "—"
    try:
        parsed = datetime.date.fromisoformat(value)
    except ValueError:
        return value
    return f"{parsed.day} {parsed:%b %Y}"


def submitter(result: dict[str, Any]) -> str:
    """The organization that submitted an evaluation (results stored before organizations name none)."""
    named = result.get("submitter")
    return (named.get("organization") if isinstance(named, dict) else None) or "not recorded"
