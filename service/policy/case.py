"""The case: what an intake system submits for evaluation (see docs/api.md).

The model is built from the field dictionary (``fields.py``): one nested model per section, a
top-level field for each dictionary field without a section. Every clinical field is optional,
because intake data is often partial: a missing field is *unknown*, never *false*. Validation is
strict: ``"7"`` is not 7 and ``"yes"`` is not true, unknown fields are refused at any depth, so a
value that reaches the rules engine always has the type the rules were written for.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StringConstraints, create_model

from service.policy.fields import Dictionary, FieldSpec

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_MESSAGE = "must be a date written YYYY-MM-DD, such as 2026-12-01"


def _iso_date(value: Any) -> Any:
    """Only ``YYYY-MM-DD``: no timestamps, no week dates, no ``20261201``."""
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError(_DATE_MESSAGE)
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{_DATE_MESSAGE} (this day does not exist)") from None


def _reference(value: Any) -> Any:
    """An intake reference a reviewer can trust on screen: no blanks, no padding, and no control
    or invisible formatting characters (Unicode Cc and Cf: bidi overrides, zero-width spaces)."""
    if not isinstance(value, str):
        return value  # the strict str type reports it
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    hidden = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf")), None)
    if hidden is not None:
        raise ValueError(f"must not hold control or invisible formatting characters (found U+{ord(hidden):04X})")
    return value


IsoDate = Annotated[datetime.date, BeforeValidator(_iso_date)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=128), BeforeValidator(_reference)]


class CaseBase(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    def value(self, path: str) -> Any:
        """The documented value at a dotted path such as ``low_back_pain.nrs``; None when missing."""
        section, _, name = path.rpartition(".")
        part = getattr(self, section) if section else self
        return None if part is None else getattr(part, name, None)


def _annotation(spec: FieldSpec) -> Any:
    if spec.kind == "boolean":
        return StrictBool
    if spec.kind in ("integer", "number"):
        return Annotated[int if spec.kind == "integer" else float, Field(ge=spec.minimum, le=spec.maximum)]
    if spec.kind == "enum":
        return Literal[tuple(spec.choices)]
    code = Annotated[str, Field(pattern=spec.pattern, max_length=spec.max_length)]
    return Annotated[list[code], Field(max_length=spec.max_items)]


def _description(spec: FieldSpec) -> str | None:
    """The field's description for the OpenAPI schema, with its unit and the words of its values."""
    parts = [spec.description] if spec.description else []
    if spec.unit:
        parts.append(f"Unit (UCUM): {spec.unit}.")
    if spec.choices:
        parts.append("Values: " + "; ".join(f"`{value}` ({words})" for value, words in spec.choices.items()) + ".")
    return " ".join(parts) or None


def _field(spec: FieldSpec) -> tuple[Any, Any]:
    return (_annotation(spec) | None, Field(None, title=spec.label, description=_description(spec)))


def _model_name(section: str) -> str:
    return "".join(part.title() for part in section.split("_"))


def case_model(dictionary: Dictionary) -> type[CaseBase]:
    """The strict case model for a field dictionary (its JSON schema is the API's ``Case``)."""
    top: dict[str, Any] = {
        "external_id": (ExternalId, Field(description="The intake system's own reference; echoed back.")),
        "policy": (str | None, Field(None, min_length=1, max_length=128,
                                     description="Policy id; default: the configured default policy.")),
        "service_date": (IsoDate | None, Field(None, description="Planned date of service, YYYY-MM-DD; "
                                                "default today; selects the policy version in force.")),
        "priority": (Literal["standard", "expedited"] | None, Field(
            None, description="How urgent the request is: `expedited` (due 72 hours after receipt) or "
            "`standard` (7 calendar days, CMS-0057-F); default `standard`. Not read by any rule.")),
    }
    for section, label in dictionary.sections.items():
        members = {spec.name: _field(spec) for spec in dictionary.in_section(section)}
        if members:
            model = create_model(_model_name(section), __base__=CaseBase, **members)
            top[section] = (model | None, Field(None, title=label))
    for spec in dictionary.top_level():
        top[spec.name] = _field(spec)
    return create_model("Case", __base__=CaseBase, **top)
