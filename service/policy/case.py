"""The case: what an intake system submits for evaluation (see shared/contract.md).

Every clinical field is optional, because intake data is often partial: a missing field is
*unknown*, never *false*. Validation is strict: ``"7"`` is not 7 and ``"yes"`` is not true, so a
value that reaches the rules engine always has the type the rules were written for.

``FIELDS`` describes each clinical leaf field (path, kind, allowed values, label); the rule loader
checks rule files against it, and results use its labels in their reasons.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

TreatmentOutcome = Literal["failed", "not_tolerated", "improved", "not_tried", "contraindicated"]


def _iso_date(value: Any) -> Any:
    """Accept only ISO 8601 date strings ("2026-12-01"): no timestamps, no datetimes."""
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an ISO date string such as 2026-12-01")
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO date string such as 2026-12-01") from None


IsoDate = Annotated[datetime.date, BeforeValidator(_iso_date)]
Icd10Code = Annotated[str, Field(pattern=r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$", max_length=8)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class Patient(_Strict):
    age_years: int | None = Field(None, ge=0, le=130, title="Age (years)")
    bmi: float | None = Field(None, ge=10, le=100, title="BMI")


class LowBackPain(_Strict):
    duration_months: float | None = Field(None, ge=0, title="Low back pain duration (months)")
    mechanical: bool | None = Field(None, title="Mechanical pain pattern")
    axial_predominant: bool | None = Field(None, title="Back pain predominates over leg pain")
    predominant_pain_type: Literal["nociceptive", "neuropathic", "mixed"] | None = Field(
        None, title="Predominant pain type"
    )
    nrs: float | None = Field(None, ge=0, le=10, title="Back pain NRS")
    odi_percent: float | None = Field(None, ge=0, le=100, title="Oswestry Disability Index (%)")
    quality_of_life_severely_impaired: bool | None = Field(
        None, title="Quality of life severely impaired"
    )
    eq5d_index: float | None = Field(None, ge=-1, le=1, title="EQ-5D index")


class ConservativeCare(_Strict):
    medication_outcome: TreatmentOutcome | None = Field(None, title="Pain medication outcome")
    physical_therapy_outcome: TreatmentOutcome | None = Field(None, title="Physical therapy outcome")
    duration_months: float | None = Field(None, ge=0, title="Conservative care duration (months)")
    psychological_therapy_outcome: TreatmentOutcome | None = Field(None, title="Psychological therapy outcome")


class MultifidusDysfunction(_Strict):
    prone_instability_test: Literal["positive", "negative", "not_performed"] | None = Field(
        None, title="Prone instability test"
    )
    imaging: Literal["atrophy_or_fatty_infiltration", "no_abnormality", "not_performed"] | None = Field(
        None, title="Multifidus imaging"
    )
    electromyography: Literal["positive", "negative", "not_performed"] | None = Field(None, title="Electromyography")


class Provider(_Strict):
    facilities_and_follow_up_available: bool | None = Field(
        None, title="Facilities, equipment and staff for treatment and follow-up")


class StimulationTrial(_Strict):
    outcome: Literal["successful", "unsuccessful", "not_performed"] | None = Field(None, title="Stimulation trial")
    intraoperative_multifidus_contraction: bool | None = Field(
        None, title="Multifidus contraction seen during surgery")


class Surgery(_Strict):
    spine_surgery_indicated: bool | None = Field(None, title="Spine surgery indicated")
    prior_spine_surgery_at_or_below_t8: bool | None = Field(
        None, title="Prior spine surgery at or below T8"
    )


class Device(_Strict):
    able_to_operate: bool | None = Field(None, title="Able to operate remote and charger")
    fit_for_implant_surgery: bool | None = Field(None, title="Fit for implant surgery")


class OtherFindings(_Strict):
    scoliosis: bool | None = Field(None, title="Scoliosis")
    neurological_deficit: bool | None = Field(None, title="Neurological deficit")
    stenosis_with_leg_pain: bool | None = Field(None, title="Lumbar stenosis with leg pain")
    scs_candidate: bool | None = Field(None, title="Spinal cord stimulation candidate")


class Case(_Strict):
    # No control characters: it is echoed, logged by reference and stored (PostgreSQL text cannot hold NUL).
    external_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    policy: str | None = Field(None, min_length=1, max_length=128)
    service_date: IsoDate | None = None
    patient: Patient | None = None
    low_back_pain: LowBackPain | None = None
    conservative_care: ConservativeCare | None = None
    multifidus_dysfunction: MultifidusDysfunction | None = None
    surgery: Surgery | None = None
    device: Device | None = None
    other_findings: OtherFindings | None = None
    provider: Provider | None = None
    stimulation_trial: StimulationTrial | None = None
    diagnosis_codes: list[Icd10Code] | None = Field(None, max_length=50)

    def value(self, path: str) -> Any:
        """The documented value at a dotted path such as ``low_back_pain.nrs``; None when missing."""
        section, _, name = path.rpartition(".")
        part = getattr(self, section) if section else self
        return None if part is None else getattr(part, name)


@dataclass(frozen=True)
class FieldInfo:
    """A clinical leaf field that rules may test."""

    path: str
    kind: Literal["boolean", "number", "enum", "code_list"]
    label: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


def _describe(section: str, name: str, info: Any) -> FieldInfo:
    annotation = info.annotation
    inner = next(a for a in get_args(annotation) if a is not type(None))
    label = info.title or f"{section}.{name}"
    path = f"{section}.{name}"
    if inner is bool:
        return FieldInfo(path, "boolean", label)
    if inner in (int, float):
        bounds = {type(m).__name__: m for m in info.metadata}
        minimum = getattr(bounds.get("Ge"), "ge", None)
        maximum = getattr(bounds.get("Le"), "le", None)
        return FieldInfo(path, "number", label, minimum, maximum)
    if get_origin(inner) is Literal:
        return FieldInfo(path, "enum", label, choices=get_args(inner))
    raise TypeError(f"case field {path} has a type rules cannot test: {annotation!r}")


def _clinical_fields() -> dict[str, FieldInfo]:
    fields: dict[str, FieldInfo] = {}
    for section, info in Case.model_fields.items():
        inner = next((a for a in get_args(info.annotation) if a is not type(None)), None)
        if isinstance(inner, type) and issubclass(inner, _Strict):
            for name, leaf in inner.model_fields.items():
                described = _describe(section, name, leaf)
                fields[described.path] = described
    return fields


FIELDS: dict[str, FieldInfo] = {
    **_clinical_fields(),
    "diagnosis_codes": FieldInfo("diagnosis_codes", "code_list", "Diagnosis codes (ICD-10-CM)"),
}
