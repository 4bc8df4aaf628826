"""The response rules a CRD client and the Inferno Da Vinci CRD test kit apply to a CDS Hooks
service, re-stated in Python (no Ruby copied), for tests/test_cds_conformance.py. Each check
returns the problems it finds, in words; an empty list is a pass.

Sources (shared/crd-test-material/README.md gives repositories and commits):
- Inferno: ``cards_validation.rb``, ``suggestion_actions_validation.rb``,
  ``discovery_services_validation_test.rb``, ``service_response_validation_test.rb``,
  ``coverage_information_system_action_*_test.rb``;
- CDS Hooks 2.0 (cds-hooks/docs ``specification/current.md``): discovery, prefetch tokens,
  the response, cards, actions;
- Da Vinci CRD 2.0.1, 2.1.0, 2.2.1: the coverage-information model and invariants
  (tests/crd_invariants.py), resp-25/32/35/37/38/43, hook-19/34, dev-14.

Where two sources disagree the newest specification decides (docs/cds-hooks.md lists where):
an action's ``resourceId`` is a string (CDS Hooks 2.0; the kit expects an array); the rest of
the kit's rules are kept, and are stricter than CDS Hooks (``source.topic`` required, a summary
under 140 characters).
"""

from __future__ import annotations

import re
from typing import Any

from fhir.resources.R4B.devicerequest import DeviceRequest
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from crd_invariants import (EXTENSION_URL, answered_versions, assertion_ids_consistent, coverage_informations, values,
                            violations)

SYSTEM_ACTION_HOOKS = ("appointment-book", "order-sign", "order-dispatch")  # Inferno: systemActions required
INDICATORS = ("info", "warning", "critical")
DECISIONS = {"covered", "not-covered", "no-auth", "satisfied"}
R4_MODELS = {"ServiceRequest": ServiceRequest, "DeviceRequest": DeviceRequest}
# CDS Hooks 2.0 prefetch tokens; CRD's FHIRPath tokens start with '%' or name context elements deeper.
_SIMPLE_TOKENS = {"context.patientId", "context.encounterId", "context.userId", "userPractitionerId",
                  "userPractitionerRoleId", "userPatientId", "userRelatedPersonId"}
_TOKEN = re.compile(r"\{\{(.*?)\}\}")
_TEMPLATE = re.compile(r"^[A-Z][A-Za-z]+(/[^?/]+|\?.+)$")
_VERSION = re.compile(r"\d+\.\d+")


def _typed(problems: list[str], holder: Any, name: str, kind: type | tuple[type, ...], what: str,
           required: bool = True) -> bool:
    value = holder.get(name) if isinstance(holder, dict) else None
    if value is None:
        if required:
            problems.append(f"{what}.{name} is required")
        return False
    if not isinstance(value, kind):
        problems.append(f"{what}.{name} must be {getattr(kind, '__name__', kind)}")
        return False
    return True


# --- discovery ---------------------------------------------------------------------------------


def discovery_problems(document: Any, simple_tokens_only: bool = False) -> list[str]:
    """Inferno's discovery checks (services array; hook, description, id strings), CDS Hooks'
    prefetch templates, CRD's configuration options and versions."""
    problems: list[str] = []
    if not isinstance(document, dict) or not isinstance(document.get("services"), list):
        return ["the discovery response must be an object with a services array"]
    for index, service in enumerate(document["services"]):
        where = f"services[{index}]"
        for name in ("hook", "description", "id"):
            _typed(problems, service, name, str, where)
        _typed(problems, service, "title", str, where, required=False)
        prefetch = service.get("prefetch", {})
        if not isinstance(prefetch, dict):
            problems.append(f"{where}.prefetch must be an object")
            prefetch = {}
        for key, template in prefetch.items():
            if not isinstance(template, str):
                problems.append(f"{where}.prefetch.{key} must be a string")
                continue
            tokens = _TOKEN.findall(template)
            if simple_tokens_only and any(token not in _SIMPLE_TOKENS for token in tokens):
                problems.append(f"{where}.prefetch.{key} uses tokens beyond CDS Hooks 2.0's: {tokens}")
            # a template that is one token names a reference the context holds ("{{context.userId}}")
            if not _TOKEN.fullmatch(template) and not _TEMPLATE.match(_TOKEN.sub("x", template)):
                problems.append(f"{where}.prefetch.{key} is not a FHIR read or search: {template!r}")
        extension = service.get("extension", {})
        options = extension.get("davinci-crd.configuration-options", []) if isinstance(extension, dict) else []
        for option in options if isinstance(options, list) else [None]:
            kinds = {"boolean": bool, "integer": int}
            if not isinstance(option, dict) or option.get("type") not in kinds:
                problems.append(f"{where}: a configuration option needs a type boolean or integer")
                continue
            for name in ("code", "name", "description"):
                _typed(problems, option, name, str, f"{where} option")
            if "default" in option and not isinstance(option["default"], kinds[option["type"]]):
                problems.append(f"{where} option {option.get('code')}: default of the wrong type")
        versions = extension.get("davinci-crd.version", []) if isinstance(extension, dict) else []
        if not isinstance(versions, list) or not all(isinstance(v, str) and _VERSION.fullmatch(v) for v in versions):
            problems.append(f"{where}: davinci-crd.version must list versions as major.minor")
    return problems


# --- the answer: cards and actions ---------------------------------------------------------------


def card_problems(card: Any) -> list[str]:
    """Inferno's card checks (required fields and types, summary < 140, indicator, source label
    and topic, links, suggestions and their actions)."""
    problems: list[str] = []
    if not isinstance(card, dict):
        return ["a card must be an object"]
    for name, kind in (("summary", str), ("indicator", str), ("source", dict)):
        _typed(problems, card, name, kind, "card")
    if isinstance(card.get("summary"), str) and len(card["summary"]) >= 140:
        problems.append("card.summary must be under 140 characters")
    if isinstance(card.get("indicator"), str) and card["indicator"] not in INDICATORS:
        problems.append(f"card.indicator {card['indicator']!r} is not info, warning or critical")
    source = card.get("source")
    if isinstance(source, dict):
        _typed(problems, source, "label", str, "card.source")
        if _typed(problems, source, "topic", dict, "card.source"):
            for name in ("code", "system"):
                _typed(problems, source["topic"], name, str, "card.source.topic")
    for name, kind in (("uuid", str), ("detail", str), ("suggestions", list), ("overrideReasons", list),
                       ("links", list)):
        _typed(problems, card, name, kind, "card", required=False)
    for link in card.get("links") or []:
        for name in ("label", "type", "url"):
            _typed(problems, link, name, str, "card.links[]")
        if isinstance(link, dict) and link.get("type") not in ("absolute", "smart"):
            problems.append("card.links[].type must be absolute or smart")
        if isinstance(link, dict) and link.get("type") == "absolute" and link.get("appContext"):
            problems.append("card.links[].appContext is for smart links only")
    for reason in card.get("overrideReasons") or []:
        for name in ("code", "system", "display"):
            _typed(problems, reason, name, str, "card.overrideReasons[]")
    if card.get("suggestions"):
        if card.get("selectionBehavior") not in ("at-most-one", "any"):
            problems.append("card.selectionBehavior (at-most-one or any) is required with suggestions")
        for suggestion in card["suggestions"]:
            _typed(problems, suggestion, "label", str, "card.suggestions[]")
            actions = suggestion.get("actions") if isinstance(suggestion, dict) else None
            if actions is not None and (not isinstance(actions, list) or not actions):
                problems.append("card.suggestions[].actions must be a non-empty array")
            for action in actions or []:
                problems += action_problems(action)
    return problems


def action_problems(action: Any) -> list[str]:
    """An action: type and description; create and update carry a FHIR resource, delete a
    resourceId (a string: CDS Hooks 2.0; the kit's array is accepted too)."""
    problems: list[str] = []
    for name in ("type", "description"):
        _typed(problems, action, name, str, "action")
    kind = action.get("type") if isinstance(action, dict) else None
    if kind in ("create", "update"):
        resource = action.get("resource")
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            problems.append(f"a {kind} action must carry a FHIR resource")
    elif kind == "delete":
        ids = action.get("resourceId")
        if not (isinstance(ids, str) or (isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids))):
            problems.append("a delete action needs a resourceId")
    elif kind is not None:
        problems.append(f"action type {kind!r} is not create, update or delete")
    return problems


def response_problems(body: Any, hook: str) -> list[str]:
    """Every 200: a JSON object, a cards array (each card valid), systemActions on the hooks the
    kit requires it for, every action valid, no coverage information in a card (CRD resp-25)."""
    if not isinstance(body, dict):
        return ["the answer must be a JSON object"]
    problems: list[str] = []
    if not isinstance(body.get("cards"), list):
        problems.append("cards must be an array")
    for card in body.get("cards") or []:
        problems += card_problems(card)
        if EXTENSION_URL in repr(card):
            problems.append("coverage information in a card (CRD resp-25: never a card)")
    actions = body.get("systemActions")
    if hook in SYSTEM_ACTION_HOOKS and actions is None:
        problems.append(f"systemActions is required on {hook} (Inferno)")
    if actions is not None and not isinstance(actions, list):
        problems.append("systemActions must be an array")
    for action in actions or []:
        problems += action_problems(action)
    return problems


# --- coverage information ------------------------------------------------------------------------


def draft_orders(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    entries = request["context"]["draftOrders"].get("entry", [])
    return {f"{e['resource']['resourceType']}/{e['resource'].get('id')}": e["resource"]
            for e in entries if isinstance(e, dict) and isinstance(e.get("resource"), dict)}


def update_problems(action: dict[str, Any], request: dict[str, Any], version: str,
                    coverages: set[str]) -> list[str]:
    """One coverage-information update, held to: Inferno (update of a draft order, valid R4,
    assertion ids per Coverage), CRD resp-37 (nothing else changed), the logical model and
    invariants of each version answered (2.0.1 and 2.1.0, or 2.2), the Coverage given, hook-34
    (order-select: a selected order), hook-19 (order-select: no documentation asked for),
    resp-38 (documentation asked for comes with its questionnaire), and no coverage decision."""
    problems: list[str] = []
    if action.get("type") != "update":
        return ["a coverage-information action must be an update"]
    resource = action["resource"]
    reference = f"{resource.get('resourceType')}/{resource.get('id')}"
    draft = draft_orders(request).get(reference)
    if draft is None:
        return [f"{reference} is not one of the draft orders"]
    if request["hook"] == "order-select" and reference not in (request["context"].get("selections") or []):
        problems.append(f"{reference} was not selected (CRD hook-34)")
    try:
        R4_MODELS[resource["resourceType"]].model_validate(resource)
    except (KeyError, ValidationError) as error:
        problems.append(f"{reference} is not valid R4: {str(error)[:200]}")
    if {k: v for k, v in resource.items() if k != "extension"} != {k: v for k, v in draft.items() if k != "extension"}:
        problems.append(f"{reference}: elements other than extensions changed (CRD resp-37)")
    informations = coverage_informations(resource)
    others = [e for e in resource.get("extension", []) if e.get("url") != EXTENSION_URL]
    if others != [e for e in draft.get("extension", []) if e.get("url") != EXTENSION_URL]:
        problems.append(f"{reference}: extensions other than coverage information changed (CRD resp-37)")
    if not informations:
        problems.append(f"{reference}: no coverage information")
    if not assertion_ids_consistent(resource):
        problems.append(f"{reference}: coverage-assertion-ids not one per Coverage (Inferno)")
    new = [i for i in informations if i not in coverage_informations(draft)]
    for information in new:
        for checked in answered_versions(version):
            problems += [f"{reference} CRD {checked}: {v}" for v in violations(information, checked)]
        [coverage] = values(information, "coverage") or [{}]
        if coverage.get("reference") not in coverages:
            problems.append(f"{reference}: coverage {coverage} is not a Coverage the client gave")
        codes = {v for url in ("covered", "pa-needed", "doc-needed") for v in values(information, url)}
        if codes & DECISIONS:
            problems.append(f"{reference}: a coverage decision ({sorted(codes & DECISIONS)})")
        documentation = values(information, "doc-needed")
        if request["hook"] == "order-select" and documentation:
            problems.append(f"{reference}: documentation asked for on order-select (CRD hook-19)")
        if "clinical" in documentation and not values(information, "questionnaire"):
            problems.append(f"{reference}: clinical documentation without its questionnaire (CRD resp-38)")
        if bool(documentation) != bool(values(information, "doc-purpose")):
            problems.append(f"{reference}: doc-needed and doc-purpose go together")
    return problems
