"""The assertions of the Inferno DTR payer-server test kit's static questionnaire package group
(inferno-framework/davinci-dtr-test-kit, ``cql_test.rb`` and ``payer_server_groups/static_form_*``),
applied to a ``$questionnaire-package`` answer; plus DTR 2.0.1's own package rules (oper-12..18)
that the kit leaves to the HL7 validator.

One deliberate difference: the kit compares a ``cqf-library`` canonical with the Libraries' bare
``url``; DTR asks for version-specific references (``url|version``), which this service sends, so
the check here compares the url part and then requires the version to match too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from service.fhir.parse import Located, validation_issues

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition"
EXPRESSION_EXTENSIONS = {f"{SDC}/sdc-questionnaire-initialExpression", f"{SDC}/sdc-questionnaire-candidateExpression",
                         f"{SDC}/sdc-questionnaire-contextExpression"}
QUESTIONNAIRE_EXPRESSIONS = {f"{SDC}/sdc-questionnaire-launchContext", "http://hl7.org/fhir/StructureDefinition/variable",
                             f"{SDC}/sdc-questionnaire-itemPopulationContext"}
CQF_LIBRARY = "http://hl7.org/fhir/StructureDefinition/cqf-library"


def _items(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from _items(item.get("item", []))


def bundles_of(parameters: dict[str, Any], name: str = "PackageBundle") -> list[dict[str, Any]]:
    assert parameters["resourceType"] == "Parameters", "Response is null or not a valid type."
    found = [p["resource"] for p in parameters["parameter"] if p.get("resource", {}).get("resourceType") == "Bundle"]
    assert found, "No questionnaire bundles found."
    assert all(p["name"] == name for p in parameters["parameter"] if p.get("resource", {}).get("resourceType") == "Bundle")
    return found


def assert_inferno_static_package(parameters: dict[str, Any], name: str = "PackageBundle") -> None:
    """Every assertion of the kit's static-form group, then the package rules of DTR 2.0.1."""
    assert not validation_issues(Located(parameters, "Parameters")), validation_issues(Located(parameters, "Parameters"))
    for bundle in bundles_of(parameters, name):
        libraries = _check_libraries(bundle)
        names = {library["name"] for library in libraries}
        questionnaires = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Questionnaire"]
        assert questionnaires, "No questionnaires found."
        for questionnaire in questionnaires:
            _check_questionnaire_extensions(questionnaire, libraries, names)
            _check_questionnaire_items(questionnaire, names)
        _check_package_rules(bundle, libraries)


def _check_libraries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    libraries, names = [], set()
    for index, entry in enumerate(bundle["entry"]):
        library = entry["resource"]
        if library["resourceType"] != "Library":
            continue
        types = set()
        for content in library["content"]:
            assert content.get("data") is not None, f"[library {index + 1}] content element included no data."
            assert content["contentType"] in ("text/cql", "application/elm+json"), f"[library {index + 1}] has non-cql/elm content."
            types.add(content["contentType"])
        assert library["name"] not in names, "Found duplicate library names - all names must be unique."
        names.add(library["name"])
        assert "text/cql" in types, f"[library {index + 1}] does not include CQL."
        assert "application/elm+json" in types, f"[library {index + 1}] does not include ELM."
        libraries.append(library)
    assert libraries, "No Libraries found."
    return libraries


def _check_expression(expression: dict[str, Any], names: set[str], where: str) -> None:
    assert expression["language"] == "text/cql", f"{where}: Found non-cql expression."
    assert any(expression["expression"].startswith(f'"{name}"') for name in names), \
        f"{where}: Expression in questionnaire misformatted (no reference to an included library name)."


def _check_questionnaire_extensions(questionnaire: dict[str, Any], libraries: list[dict[str, Any]], names: set[str]) -> None:
    extensions = questionnaire.get("extension", [])
    assert extensions, "No extensions found. Questionnaire must demonstrate prepopulation."
    urls = {library["url"]: library["version"] for library in libraries}
    references = [e["valueCanonical"] for e in extensions if e["url"] == CQF_LIBRARY]
    assert references, "No cqf library extension found."
    for reference in references:
        url, _, version = reference.partition("|")
        assert url in urls, f"Some libraries referenced by cqf-libraries were not found: {reference}"
        assert version == urls[url], f"{reference} is not version-specific to the Library in the package"
    for extension in extensions:
        if extension["url"] in QUESTIONNAIRE_EXPRESSIONS and "valueExpression" in extension:
            _check_expression(extension["valueExpression"], names, extension["url"])


def _check_questionnaire_items(questionnaire: dict[str, Any], names: set[str]) -> None:
    found = 0
    for item in _items(questionnaire.get("item", [])):
        for extension in item.get("extension", []):
            if "valueExpression" in extension:
                _check_expression(extension["valueExpression"], names, item["linkId"])
            found += extension["url"] in EXPRESSION_EXTENSIONS
    if questionnaire.get("item"):
        assert found, "No extensions found. Questionnaire must demonstrate prepopulation."


def _check_package_rules(bundle: dict[str, Any], libraries: list[dict[str, Any]]) -> None:
    """DTR 2.0.1 oper-12..18 and the resources' validity (the kit runs the HL7 validator)."""
    entries = [e["resource"] for e in bundle["entry"]]
    assert bundle["type"] == "collection"
    assert entries[0]["resourceType"] == "Questionnaire", "the Questionnaire is the first entry (oper-12)"
    for resource in [bundle, *entries]:
        issues = validation_issues(Located(resource, resource["resourceType"]))
        assert not issues, (resource["resourceType"], issues)
    by_url = {}
    for resource in entries:
        if "url" in resource:
            assert resource["url"] not in by_url, f"{resource['url']} twice in one package"
            by_url[resource["url"]] = resource
    questionnaire = entries[0]

    def resolves(canonical: str, kind: str) -> None:
        url, bar, version = canonical.partition("|")
        assert bar and version, f"{canonical} is not version-specific (oper-16)"
        assert url in by_url and by_url[url]["resourceType"] == kind and by_url[url]["version"] == version, \
            f"{canonical} does not resolve in the package"

    for extension in questionnaire.get("extension", []):
        if extension["url"] == CQF_LIBRARY:
            resolves(extension["valueCanonical"], "Library")
    for library in libraries:  # recursive depends-on (oper-12), value sets expanded (oper-14/15)
        for artifact in library.get("relatedArtifact", []):
            if artifact["type"] == "depends-on":
                resolves(artifact["resource"], "ValueSet" if "/ValueSet/" in artifact["resource"] else "Library")
        elm = json.loads(base64.b64decode(next(c["data"] for c in library["content"]
                                               if c["contentType"] == "application/elm+json")))
        defined = {d["name"] for d in elm["library"]["statements"]["def"]}
        for item in _items(questionnaire.get("item", [])):
            for extension in item.get("extension", []):
                if extension["url"] in EXPRESSION_EXTENSIONS:
                    library_name, _, define = extension["valueExpression"]["expression"].partition(".")
                    if library_name == f'"{library["name"]}"':
                        assert json.loads(define) in defined, f"{define} is not defined in {library['name']}"
        for value_set in elm["library"].get("valueSets", {}).get("def", []):
            resolves(f"{value_set['id']}|{value_set['version']}", "ValueSet")
    for resource in entries:
        if resource["resourceType"] == "ValueSet":
            assert resource["expansion"]["contains"], "every value set is expanded (2.0.1 oper-15)"
    drafts = [r for r in entries if r["resourceType"] == "QuestionnaireResponse"]
    assert len(drafts) == 1, "one draft QuestionnaireResponse (oper-18)"
    assert drafts[0]["questionnaire"] == f"{questionnaire['url']}|{questionnaire['version']}"  # spec-122
