"""The ``fhir:`` key of a field in ``rules/fields.yaml``: where the field is read from in FHIR.

A field lists its sources; when several resources give a value, the latest dated on or before
the service date wins. Every field can also be answered by a QuestionnaireResponse item whose
``linkId`` is the field's path (that needs no declaration). The format (docs/fhir.md has examples):

    observation: CODES         Observation with one of the codes (status final, amended, corrected)
      value: [integer, quantity]            the value forms read (default: quantity)
      units: {UCUM code: factor}            accepted units of a valueQuantity and the factor to the
                                            field's unit; any other unit is refused, never read raw
    condition: CODES           Condition with a code starting with one of the codes (not refuted,
                                            not entered-in-error); a bare system takes every code of it
      read: codes | present | onset_months  its codes (code_list), true (boolean), or the months
                                            from its onset to the service date (number)
    procedure: CODES           completed Procedure with one of the codes
      read: present | outcome               true (boolean), or its outcome through
      outcomes: {CODE: value}               the map of outcome codes to the field's enum values
    patient: age               Patient.birthDate -> completed years at the service date
    scored_questionnaire:      a QuestionnaireResponse of a scored instrument (the ODI)
      questionnaire: CODES                  recognized by its Questionnaire's code, or by having
      items: [linkId, ...]                  all of these items answered with ordinal values
      score: {link_ids: [...], codes: CODES}  the score item, read when present
      item_maximum: 5                       percent = sum / (item_maximum x answered) x 100
      min_answered: 9                       when recomputed from fewer answered items: unknown

CODES is ``system|code`` or a list of them. ``parse_sources`` refuses a malformed entry, naming
the problem; the dictionary loader adds the file and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

KINDS = ("observation", "condition", "procedure", "patient", "scored_questionnaire")
VALUE_FORMS = ("integer", "quantity")  # R4 Observation has no valueDecimal


class SourceError(ValueError):
    """A malformed ``fhir:`` declaration; the message says what is wrong and where in it."""


@dataclass(frozen=True)
class Code:
    system: str
    code: str | None  # None: any code of the system

    def matches(self, system: Any, code: Any, prefix: bool = False) -> bool:
        if system != self.system or not isinstance(code, str):
            return False
        if self.code is None:
            return True
        return code.startswith(self.code) if prefix else code == self.code

    def __str__(self) -> str:
        return self.system if self.code is None else f"{self.system}|{self.code}"


@dataclass(frozen=True)
class ObservationSource:
    codes: tuple[Code, ...]
    value_forms: tuple[str, ...] = ("quantity",)
    units: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ConditionSource:
    codes: tuple[Code, ...]
    read: str  # codes | present | onset_months


@dataclass(frozen=True)
class ProcedureSource:
    codes: tuple[Code, ...]
    read: str  # present | outcome
    outcomes: dict[Code, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PatientSource:
    read: str  # age


@dataclass(frozen=True)
class ScoredQuestionnaireSource:
    questionnaire: tuple[Code, ...]
    items: tuple[str, ...]
    score_link_ids: tuple[str, ...]
    score_codes: tuple[Code, ...]
    item_maximum: float
    min_answered: int


Source = Union[ObservationSource, ConditionSource, ProcedureSource, PatientSource, ScoredQuestionnaireSource]

# What each source may produce, by the field's kind.
_READS = {
    ("condition", "codes"): {"code_list"},
    ("condition", "present"): {"boolean"},
    ("condition", "onset_months"): {"number", "integer"},
    ("procedure", "present"): {"boolean"},
    ("procedure", "outcome"): {"enum"},
    ("patient", "age"): {"integer", "number"},
}


def parse_sources(raw: Any, kind: str, choices: dict[str, str] | None = None) -> tuple[Source, ...]:
    """The sources declared by a field's ``fhir:`` value, checked against the field's ``kind``
    (and enum ``choices``); SourceError names the first problem (``[1].units: ...``)."""
    if raw is None:
        return ()
    entries = raw if isinstance(raw, list) else [raw]
    return tuple(_parse_one(entry, kind, choices or {}, f"[{i}]") for i, entry in enumerate(entries))


def _parse_one(entry: Any, kind: str, choices: dict[str, str], where: str) -> Source:
    if not isinstance(entry, dict):
        raise SourceError(f"{where}: expected a mapping with one of {', '.join(KINDS)}")
    named = [k for k in KINDS if k in entry]
    if len(named) != 1:
        raise SourceError(f"{where}: expected exactly one of {', '.join(KINDS)}, got {sorted(entry) or 'none'}")
    source_kind = named[0]
    allowed = {
        "observation": {"value", "units"},
        "condition": {"read"},
        "procedure": {"read", "outcomes"},
        "patient": set(),
        "scored_questionnaire": set(),
    }[source_kind] | {source_kind}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise SourceError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} for a {source_kind} source")
    here = f"{where}.{source_kind}"
    if source_kind == "observation":
        return _observation(entry, kind, where)
    if source_kind == "scored_questionnaire":
        if kind not in ("number", "integer"):
            raise SourceError(f"{here}: gives a number, but the field is {kind}")
        return _scored(entry[source_kind], here)
    read = entry[source_kind] if source_kind == "patient" else entry.get("read")
    if (source_kind, read) not in _READS:
        options = [r for (k, r) in _READS if k == source_kind]
        raise SourceError(f"{where}: {source_kind} reads one of {', '.join(options)}, got {read!r}")
    if kind not in _READS[(source_kind, read)]:
        raise SourceError(f"{where}: a {source_kind} read as {read} cannot fill a {kind} field")
    if source_kind == "patient":
        return PatientSource(read)
    codes = _codes(entry[source_kind], here, allow_bare=(read == "codes"))
    if source_kind == "condition":
        return ConditionSource(codes, read)
    outcomes: dict[Code, str] = {}
    if read == "outcome":
        raw_outcomes = entry.get("outcomes")
        if not isinstance(raw_outcomes, dict) or not raw_outcomes:
            raise SourceError(f"{where}.outcomes: expected a mapping of outcome codes to values")
        for text, value in raw_outcomes.items():
            (code,) = _codes(text, f"{where}.outcomes")
            if value not in choices:
                raise SourceError(f"{where}.outcomes.{text}: {value!r} is not one of {', '.join(choices)}")
            outcomes[code] = value
    elif "outcomes" in entry:
        raise SourceError(f"{where}.outcomes: only a procedure read as outcome has outcomes")
    return ProcedureSource(codes, read, outcomes)


def _observation(entry: dict[str, Any], kind: str, where: str) -> ObservationSource:
    if kind not in ("number", "integer"):
        raise SourceError(f"{where}.observation: an observation gives a number, but the field is {kind}")
    codes = _codes(entry["observation"], f"{where}.observation")
    forms = entry.get("value", ["quantity"])
    forms = forms if isinstance(forms, list) else [forms]
    if not forms or any(f not in VALUE_FORMS for f in forms):
        raise SourceError(f"{where}.value: expected value forms among {', '.join(VALUE_FORMS)}, got {forms!r}")
    units = entry.get("units", {})
    if not isinstance(units, dict) or any(not isinstance(u, str) or isinstance(f, bool)
                                          or not isinstance(f, (int, float)) or f <= 0
                                          for u, f in units.items()):
        raise SourceError(f"{where}.units: expected a mapping of UCUM codes to positive factors")
    if "quantity" in forms and not units:
        raise SourceError(f"{where}.units: a valueQuantity is read only in declared units; list them")
    return ObservationSource(codes, tuple(forms), {u: float(f) for u, f in units.items()})


def _scored(raw: Any, where: str) -> ScoredQuestionnaireSource:
    if not isinstance(raw, dict):
        raise SourceError(f"{where}: expected a mapping (questionnaire, items, score, item_maximum, min_answered)")
    unknown = sorted(set(raw) - {"questionnaire", "items", "score", "item_maximum", "min_answered"})
    if unknown:
        raise SourceError(f"{where}: unknown key(s) {', '.join(unknown)}")
    items = raw.get("items")
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        raise SourceError(f"{where}.items: expected a list of linkIds")
    score = raw.get("score", {})
    if not isinstance(score, dict) or set(score) - {"link_ids", "codes"}:
        raise SourceError(f"{where}.score: expected a mapping with link_ids and/or codes")
    link_ids = score.get("link_ids", [])
    if not isinstance(link_ids, list) or not all(isinstance(i, str) for i in link_ids):
        raise SourceError(f"{where}.score.link_ids: expected a list of linkIds")
    maximum = raw.get("item_maximum")
    if isinstance(maximum, bool) or not isinstance(maximum, (int, float)) or maximum <= 0:
        raise SourceError(f"{where}.item_maximum: expected a positive number (the highest ordinal of an item)")
    least = raw.get("min_answered", len(items))
    if isinstance(least, bool) or not isinstance(least, int) or not 1 <= least <= len(items):
        raise SourceError(f"{where}.min_answered: expected a whole number from 1 to {len(items)}")
    return ScoredQuestionnaireSource(
        questionnaire=_codes(raw["questionnaire"], f"{where}.questionnaire") if "questionnaire" in raw else (),
        items=tuple(items),
        score_link_ids=tuple(link_ids),
        score_codes=_codes(score["codes"], f"{where}.score.codes") if "codes" in score else (),
        item_maximum=float(maximum),
        min_answered=least,
    )


def _codes(raw: Any, where: str, allow_bare: bool = False) -> tuple[Code, ...]:
    texts = raw if isinstance(raw, list) else [raw]
    codes = []
    for text in texts:
        if not isinstance(text, str) or not text:
            raise SourceError(f"{where}: expected system|code strings, got {text!r}")
        system, bar, code = text.partition("|")
        if not system.startswith(("http://", "https://", "urn:")):
            raise SourceError(f"{where}: {text!r} does not start with a code system URI")
        if not bar and not allow_bare:
            raise SourceError(f"{where}: {text!r} names a system but no code (write system|code)")
        if bar and not code:
            raise SourceError(f"{where}: {text!r} has an empty code")
        codes.append(Code(system, code if bar else None))
    if not codes:
        raise SourceError(f"{where}: expected at least one code")
    return tuple(codes)
