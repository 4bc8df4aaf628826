"""SDC Questionnaires (R4) built from the field dictionary: one item per field, ``linkId`` = the
field's path, so a QuestionnaireResponse to it fills the case (``answers``).

Item types, answer options, units and bounds come from ``rules/fields.yaml``; an item carries the
LOINC code of the field's Observation source when it has one. Fields are grouped by section.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from service.policy.logic import AnyOf, Comparison, walk
from service.policy.sources import ObservationSource, ScoredQuestionnaireSource

SDC_PROFILE = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire|3.0.0"
UNIT_URL = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
ITEM_CONTROL = "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl"
ITEM_CONTROL_SYSTEM = "http://hl7.org/fhir/questionnaire-item-control"
# UCUM codes as a person reads them (a form shows the display, not ``a`` or ``{score}``)
UNIT_WORDS = {"a": "years", "mo": "months", "kg/m2": "kg/m²", "{score}": "points", "%": "%", "1": ""}
MIN_URL, MAX_URL = "http://hl7.org/fhir/StructureDefinition/minValue", "http://hl7.org/fhir/StructureDefinition/maxValue"
CHOICE_SYSTEM = "urn:coverage-criteria:choices:"  # + field path: the code system of a field's enum values
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
_ITEM_TYPE = {"boolean": "boolean", "integer": "integer", "number": "decimal", "enum": "choice",
              "code_list": "open-choice"}
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def questionnaire(dictionary: Any, paths: Iterable[str], *, url: str, title: str, name: str,
                  status: str = "active", version: str | None = None, description: str | None = None,
                  gates: dict[str, tuple[str, Any]] | None = None) -> dict[str, Any]:
    """A Questionnaire asking for ``paths`` (in the dictionary's order), served at ``url``;
    ``gates`` (``gates_of``) asks a field only while another's answer leaves it needed."""
    from service.fhir.intake import field_sources  # parsed once per dictionary

    sources = field_sources(dictionary)
    wanted = set(paths)
    groups: dict[str, list[dict[str, Any]]] = {}
    for path, spec in dictionary.fields.items():
        if path in wanted:
            section = path.partition(".")[0] if "." in path else ""
            item = _item(spec, sources.get(path, ()))
            gate = (gates or {}).get(path)
            if gate is not None and gate[0] in wanted:
                item.update(_enable_when(dictionary.fields[gate[0]], gate[1]))
            groups.setdefault(section, []).append(item)
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
        coding = {"system": "http://unitsofmeasure.org", "code": unit, "display": UNIT_WORDS.get(unit, unit)}
        extensions.append({"url": UNIT_URL, "valueCoding": coding})
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
    if description:  # shown as the question's help (an icon), not as a line of its own
        help_control = {"url": ITEM_CONTROL, "valueCodeableConcept": {"coding": [
            {"system": ITEM_CONTROL_SYSTEM, "code": "help", "display": "Help-Button"}]}}
        item["item"] = [{"extension": [help_control], "linkId": f"{spec.path}.help", "text": description, "type": "display"}]
    return item


def _enable_when(gate: Any, value: Any) -> dict[str, Any]:
    """Ask an item unless ``gate`` was answered ``value`` (unanswered, or answered otherwise: asked)."""
    answer = {"answerBoolean": value} if gate.kind == "boolean" else {
        "answerCoding": {"system": CHOICE_SYSTEM + gate.path, "code": value}}
    return {"enableWhen": [{"question": gate.path, "operator": "exists", "answerBoolean": False},
                           {"question": gate.path, "operator": "!=", **answer}],
            "enableBehavior": "any"}


def gates_of(version: Any) -> dict[str, tuple[str, Any]]:
    """Fields a policy needs only when another answer leaves them needed: in a rule ``any: [A
    equals a, B ...]`` where B is read by no other rule, B is asked unless A was answered ``a``
    (ISASS: imaging only when the prone instability test is not positive)."""
    rules = (*version.criteria, *version.flags)
    readers: dict[str, int] = {}
    for rule in rules:
        for path in rule.fields:
            readers[path] = readers.get(path, 0) + 1
    gates: dict[str, tuple[str, Any]] = {}
    for rule in rules:
        for _, node in walk(rule.logic, rule.id):
            if not isinstance(node, AnyOf) or len(node.parts) != 2:
                continue
            first, second = node.parts
            if isinstance(first, Comparison) and isinstance(second, Comparison) and first.operator == "equals" \
                    and readers.get(second.field) == 1 and second.field != first.field:
                gates[second.field] = (first.field, first.value)
    return gates


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
                         gates=gates_of(version),
                         title=f"{version.title}: case information", version=version.version,
                         status="draft" if version.status == "draft" else "active",
                         description="Answers fill the case fields of the same linkId; they support a "
                                     "reviewer's determination and are not a coverage decision.")


def for_evaluation(dictionary: Any, result: dict[str, Any], url: str, version: Any = None) -> dict[str, Any]:
    """The Questionnaire of the fields one evaluation is missing (only those); with its policy
    ``version``, gated as the policy's is."""
    policy = result["policy"]
    return questionnaire(dictionary, missing_fields(result), url=url, name=f"evaluation-{result['evaluation_id']}",
                         gates=gates_of(version) if version is not None else None,
                         title=f"{policy.get('title', policy['id'])}: information missing from evaluation "
                               f"{result['evaluation_id']}", version=policy.get("version"),
                         description="Answer these and send the QuestionnaireResponse in a Bundle with the "
                                     "evaluation's other resources to evaluate the case again.")
