"""How the review page words a stored result: statuses as a symbol and a word (never colour
alone), field paths by their labels, values as reviewers read them, dates without ambiguity, and
citations with the link their source declares."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
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
OUTCOMES_SHORT = {  # for lists: the same, shorter
    "all_criteria_met": "All criteria met",
    "criteria_not_met": "Criteria not met",
    "information_missing": "Information missing",
}
_FLAG_ORDER = {"present": 0, "unknown": 1, "absent": 2}
DEFAULT_EVIDENCE_MONTHS = 12  # evidence older than this before the service date is marked old, unless the policy says
# What a FHIR evidence date is, by the element it was read from (its first name part) ...
_DATE_ELEMENTS = {
    "birthDate": "born",
    "onset": "onset",
    "effective": "observed",
    "issued": "issued",
    "performed": "performed",
    "recordedDate": "recorded",
    "authored": "answered",
}
# ... or, for results stored before the element was recorded, by the resource type where it is certain.
_DATE_BY_TYPE = {"Patient": "born", "Observation": "observed", "Procedure": "performed", "QuestionnaireResponse": "answered"}


@dataclass(frozen=True)
class EvidenceDate:
    """An evidence date in words: what it is (``observed``), the day, and whether it is old."""

    kind: str
    day: str
    old: bool
    limit_months: int


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

    def evidence_date(self, result: dict[str, Any], source: dict[str, Any] | None) -> EvidenceDate | None:
        """The date of a FHIR source: what kind of date it is, and whether it is older than the
        policy allows before the service date (12 months when the policy is silent). A birth date
        is never old."""
        if not source or not source.get("date"):
            return None
        try:
            dated = datetime.date.fromisoformat(source["date"])
        except (TypeError, ValueError):
            return EvidenceDate("dated", str(source["date"]), False, 0)
        kind = date_kind(source)
        version = self.policy_version(result.get("policy", {}))
        limit = (version and getattr(version, "evidence_max_age_months", None)) or DEFAULT_EVIDENCE_MONTHS
        reference_day = _reference_day(result)
        old = kind != "born" and reference_day is not None and dated < months_before(reference_day, limit)
        return EvidenceDate(kind, day(source["date"]), old, limit)

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


def instant(value: str | None) -> datetime.datetime | None:
    """An ISO 8601 timestamp as an aware UTC datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)).astimezone(datetime.UTC)


def moment(value: str | None) -> str:
    """``2026-11-22T03:19:14Z`` -> ``22 Nov 2026, 03:19:14 UTC``: to the second, with its zone."""
    parsed = instant(value)
    if parsed is None:
        return value or "—"
    return f"{parsed.day} {parsed:%b %Y, %H:%M:%S} UTC"


def relative(value: str | None, now: datetime.datetime) -> str:
    """How long ago (or ahead) ``value`` is from ``now``, the way a list reads it: ``just now``,
    ``12 min ago``, ``3 h ago``, ``2 days ago``, ``in 5 h``; whole units, rounded down."""
    parsed = instant(value)
    if parsed is None:
        return value or "—"
    seconds = (now - parsed).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        return "just now" if not ahead else "in under a minute"
    if seconds < 3600:
        amount = f"{int(seconds // 60)} min"
    elif seconds < 2 * 86400:
        amount = f"{int(seconds // 3600)} h"
    else:
        days = int(seconds // 86400)
        amount = f"{days} days"
    return f"in {amount}" if ahead else f"{amount} ago"


def day(value: str | None) -> str:
    """``2026-12-01`` -> ``1 Dec 2026``."""
    if not value:
        return "—"
    try:
        parsed = datetime.date.fromisoformat(value)
    except ValueError:
        return value
    return f"{parsed.day} {parsed:%b %Y}"


def date_kind(source: dict[str, Any]) -> str:
    """``born``, ``onset``, ``observed``, ``performed``, ``recorded``, ``answered``, ``issued``;
    ``dated`` when the result does not say which date of the resource it is."""
    element = source.get("date_element")
    if isinstance(element, str):
        for prefix, kind in _DATE_ELEMENTS.items():
            if element.startswith(prefix):
                return kind
    reference = source.get("reference")
    resource_type = reference.partition("/")[0] if isinstance(reference, str) else ""
    return _DATE_BY_TYPE.get(resource_type, "dated")


def months_before(day_: datetime.date, months: int) -> datetime.date:
    """The same day ``months`` calendar months earlier (the month's last day when it is shorter)."""
    month_index = day_.year * 12 + day_.month - 1 - months
    year, month = divmod(month_index, 12)
    month += 1
    last = (datetime.date(year + (month == 12), month % 12 + 1, 1) - datetime.timedelta(days=1)).day
    return datetime.date(year, month, min(day_.day, last))


def _reference_day(result: dict[str, Any]) -> datetime.date | None:
    """The day evidence age is counted back from: the service date, else the evaluation's day."""
    try:
        return datetime.date.fromisoformat(result["service_date"])
    except (KeyError, TypeError, ValueError):
        parsed = instant(result.get("evaluated_at"))
        return parsed.date() if parsed else None


def iso(moment_: datetime.datetime) -> str:
    """An instant as stored and sent: ISO 8601 in UTC to the second, ``2026-11-22T03:19:14Z``."""
    aware = moment_ if moment_.tzinfo else moment_.replace(tzinfo=datetime.UTC)
    return aware.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def reviewer(person: dict[str, Any] | None) -> str:
    """A reviewer as notes, determinations and printouts name them: the key's name
    (``keys create --name``), else ``key <id>``."""
    if not person:
        return "unknown reviewer"
    return person.get("name") or f"key {person.get('key_id')}"


def flags_by_status(result: dict[str, Any]) -> dict[str, list[str]]:
    """The flag ids by status (``present``, ``unknown``, ``absent``), each in policy order."""
    groups: dict[str, list[str]] = {"present": [], "unknown": [], "absent": []}
    for flag in result.get("flags", []):
        groups.setdefault(flag.get("status", "unknown"), []).append(flag["id"])
    return groups


def information_to_request(result: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """Each field to ask the intake system for, with the criteria and flags waiting for it: the
    result's ``missing_information`` (the undecided criteria's fields) and the fields of every
    flag whose status is unknown."""
    needed: dict[str, list[str]] = {path: [] for path in result.get("missing_information", [])}
    for finding in (*result.get("criteria", []), *result.get("flags", [])):
        if finding.get("status") in ("insufficient_information", "unknown"):
            for path in finding.get("missing", []):
                needed.setdefault(path, []).append(finding["id"])
    return list(needed.items())


CODE_SYSTEMS = {
    "http://www.ama-assn.org/go/cpt": "CPT",
    "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": "HCPCS",
    "http://www.cms.gov/Medicare/Coding/ICD10": "ICD-10-PCS",
    "http://snomed.info/sct": "SNOMED CT",
    "http://loinc.org": "LOINC",
}


def requested_service(case: dict[str, Any]) -> list[str]:
    """The requested service as the stored case gives it (``requested_service``: the order's
    codes), each as ``CPT 64568`` (with its display text when there is one); [] when the intake
    did not say."""
    codings = case.get("requested_service")
    shown = []
    for coding in codings if isinstance(codings, list) else []:
        if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
            continue
        system = coding.get("system")
        name = CODE_SYSTEMS.get(system, system) if isinstance(system, str) else None
        text = f"{name} {coding['code']}" if name else coding["code"]
        if isinstance(coding.get("display"), str) and coding["display"]:
            text += f": {coding['display']}"
        shown.append(text)
    return shown


# --- requests and determinations ------------------------------------------------------------------

PRIORITIES = {"expedited": ("»", "Expedited"), "standard": ("", "Standard")}
# The reviewer's outcomes (a determination's), in the form's order; the engine never produces one.
DETERMINATIONS = {
    "approved": "Approved",
    "partially_approved": "Partially approved",
    "denied": "Denied",
    "pended_for_information": "Pended for information",
    "referred_to_physician_reviewer": "Referred to a physician reviewer",
}


def duration(seconds: float) -> str:
    """A span as a reviewer reads a clock: ``45 min``, ``5 h 20 min``, ``3 days 4 h``."""
    minutes = int(abs(seconds) // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    return f"{minutes} min"


def time_left(due_at: str | None, now: datetime.datetime) -> tuple[bool, str]:
    """``(late, span)``: ``(False, "2 days 4 h")`` left, or ``(True, "5 h")`` overdue by."""
    due = instant(due_at)
    if due is None:
        return False, "—"
    seconds = (due - now).total_seconds()
    return seconds < 0, duration(seconds)


def reason_to_start_from(result: dict[str, Any], phrasing: ResultWords) -> str:
    """The starting text of a denial's reason, which the reviewer edits: for each criterion not
    met, its requirement, what was documented (with the source) and its citations, in words."""
    paragraphs = []
    for finding in result.get("criteria", []):
        if finding.get("status") != "not_met":
            continue
        documented = []
        for item in finding.get("evidence", []):
            text = f"{phrasing.label(item['field'])} {phrasing.value(item['field'], item.get('value'))}"
            source = item.get("source")
            dated = phrasing.evidence_date(result, source)
            if source and source.get("reference"):
                text += f" (FHIR {source['reference']}" + (f", {dated.kind} {dated.day}" if dated else "") + ")"
            documented.append(text)
        cited = "; ".join(
            f"{c.get('locator')}: {(c.get('reference') or c.get('source') or '').rstrip('.')}"
            for c in finding.get("citations", [])
        )
        paragraphs.append(
            f"{finding['id']} {finding['title']} is not met. Requirement: {finding['requirement']}. "
            f"Documented: {'; '.join(documented) or 'nothing'}. Source: {cited}."
        )
    return "\n\n".join(paragraphs)
def submitter(result: dict[str, Any]) -> str:
    """The organization that submitted an evaluation (results stored before organizations name none)."""
    named = result.get("submitter")
    return (named.get("organization") if isinstance(named, dict) else None) or "not recorded"
