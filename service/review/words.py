"""How the review page words a stored result: statuses as a symbol and a word (never colour
alone), field paths by their labels, values as reviewers read them, dates without ambiguity, and
citations with the link their source declares."""

from __future__ import annotations

import datetime
import decimal
import math
from typing import Any

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
    """The words for one catalog's fields and sources; the templates call its methods."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.fields = _field_specs(catalog)

    def label(self, path: str) -> str:
        spec = self.fields.get(path)
        return spec.label if spec is not None else path

    def value(self, path: str | None, value: Any) -> str:
        """A documented value in words: yes/no, an enum value by its words, numbers in full."""
        if value is None:
            return "not documented"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, list):
            return ", ".join(self.value(path, item) for item in value)
        if isinstance(value, (int, float)):
            return _number(value)
        choices = getattr(self.fields.get(path or ""), "choices", None)
        if isinstance(choices, dict) and value in choices:
            return str(choices[value])
        return str(value).replace("_", " ")

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


def _number(value: int | float) -> str:
    """Numbers in full, never in exponent notation: 1e-07 -> 0.0000001, 7.0 -> 7."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = format(decimal.Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _field_specs(catalog: Catalog) -> dict[str, Any]:
    """Field path -> its description (``label``, and ``choices`` for enums): the catalog's field
    dictionary (rules/fields.yaml) when it has one, else the case model's fields."""
    dictionary = getattr(catalog, "dictionary", None)
    if dictionary is not None:
        return dictionary.fields
    from service.policy.case import FIELDS

    return FIELDS
