"""SDC Questionnaires (R4) built from the field dictionary: one item per field, ``linkId`` = the
field's path, so a QuestionnaireResponse to it fills the case (``answers``).

Item types, answer options, units and bounds come from ``rules/fields.yaml``; an item carries the
LOINC code of the field's Observation source when it has one. Fields are grouped by section.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from service.policy.sources import ObservationSource, ScoredQuestionnaireSource

SDC_PROFILE = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire|3.0.0"
UNIT_URL = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
MIN_URL, MAX_URL = "http://hl7.org/fhir/StructureDefinition/minValue", "http://hl7.org/fhir/StructureDefinition/maxValue"
CHOICE_SYSTEM = "urn:coverage-criteria:choices:"  # + field path: the code system of a field's enum values
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
_ITEM_TYPE = {"boolean": "boolean", "integer": "integer", "number": "decimal", "enum": "choice",
              "code_list": "open-choice"}
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def questionnaire(dictionary: Any, paths: Iterable[str], *, url: str, title: str, name: str,
                  status: str = "active", version: str | None = None, description: str | None = None) -> dict[str, Any]:
    """A Questionnaire asking for ``paths`` (in the dictionary's order), served at ``url``."""
    from service.fhir.intake import field_sources  # parsed once per dictionary

    sources = field_sources(dictionary)
    wanted = set(paths)
    groups: dict[str, list[dict[str, Any]]] = {}
    for path, spec in dictionary.fields.items():
        if path in wanted:
            section = path.partition(".")[0] if "." in path else ""
            groups.setdefault(section, []).append(_item(spec, sources.get(path, ())))
    sections = getattr(dictionary, "sections", {}) or {}
    items = []
    for section, members in groups.items():
        if not section:
            items.extend(members)
            continue
        label = sections.get(section)
        items.append({"linkId": section, "text": label or section.replace("_", " ").capitalize(),
                      "type": "group", "item": members})
    resource: dict[str, Any] = {"resourceType": "Questionnaire"}
    if _ID.match(name):
        resource["id"] = name
    resource.update({"meta": {"profile": [SDC_PROFILE]}, "url": url})
    if version:
        resource["version"] = version
    resource.update({"name": re.sub(r"[^A-Za-z0-9]", "", name.title()) or "Questionnaire", "title": title,
                     "status": status, "subjectType": ["Patient"]})
    if description:
        resource["description"] = description
    if items:  # FHIR JSON has no empty arrays: a complete evaluation's questionnaire has no items
        resource["item"] = items
    return resource


def _item(spec: Any, sources: tuple) -> dict[str, Any]:
    item: dict[str, Any] = {"linkId": spec.path, "text": spec.label}
    codes = [c for s in sources if isinstance(s, ObservationSource) for c in s.codes]
    codes += [c for s in sources if isinstance(s, ScoredQuestionnaireSource) for c in s.score_codes]
    if codes:
        item["code"] = [{"system": codes[0].system, "code": codes[0].code}]
    item["type"] = _ITEM_TYPE[spec.kind]
    extensions = []
    unit = getattr(spec, "unit", None)
    if unit and spec.kind in ("integer", "number"):
        extensions.append({"url": UNIT_URL, "valueCoding": {"system": "http://unitsofmeasure.org", "code": unit}})
    for url, bound in ((MIN_URL, spec.minimum), (MAX_URL, spec.maximum)):
        if bound is not None and spec.kind in ("integer", "number"):
            extensions.append({"url": url, **({"valueInteger": int(bound)} if spec.kind == "integer"
                                              else {"valueDecimal": bound})})
    if extensions:
        item = {"extension": extensions, **item}
    if spec.kind == "enum":
        item["answerOption"] = [{"valueCoding": {"system": CHOICE_SYSTEM + spec.path, "code": value, "display": words}}
                                for value, words in (spec.choices or {}).items()]
    if spec.kind == "code_list":
        item["repeats"] = True
    description = getattr(spec, "description", None)
    if description:
        item["item"] = [{"linkId": f"{spec.path}.help", "text": description, "type": "display"}]
    return item


def policy_fields(version: Any) -> list[str]:
    """Every field a policy version's criteria and flags read."""
    return list(dict.fromkeys(path for rule in (*version.criteria, *version.flags) for path in rule.fields))


def missing_fields(result: dict[str, Any]) -> list[str]:
    """The fields a result's criteria and flags still wait for."""
    return list(dict.fromkeys([*result.get("missing_information", []),
                               *(path for flag in result.get("flags", []) for path in flag.get("missing", []))]))


def for_policy(dictionary: Any, version: Any, url: str) -> dict[str, Any]:
    """The Questionnaire of every field a policy version reads."""
    return questionnaire(dictionary, policy_fields(version), url=url, name=f"{version.id}-{version.version}",
                         title=f"{version.title}: case information", version=version.version,
                         status="draft" if version.status == "draft" else "active",
                         description="Answers fill the case fields of the same linkId; they support a "
                                     "reviewer's determination and are not a coverage decision.")


def for_evaluation(dictionary: Any, result: dict[str, Any], url: str) -> dict[str, Any]:
    """The Questionnaire of the fields one evaluation is missing (only those)."""
    policy = result["policy"]
    return questionnaire(dictionary, missing_fields(result), url=url, name=f"evaluation-{result['evaluation_id']}",
                         title=f"{policy.get('title', policy['id'])}: information missing from evaluation "
                               f"{result['evaluation_id']}", version=policy.get("version"),
                         description="Answer these and send the QuestionnaireResponse in a Bundle with the "
                                     "evaluation's other resources to evaluate the case again.")
