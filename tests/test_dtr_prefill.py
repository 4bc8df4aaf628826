"""DTR pre-population: CQL and ELM generated from the ``fhir:`` declarations of rules/fields.yaml,
run in a real CQL engine (cql-execution + cql-exec-fhir, tests/js), pre-fill exactly what the
project's own FHIR intake reads from the same Bundle, field by field, over the real example files
in ../shared/fhir-examples (read in place) and generated charts."""

from __future__ import annotations

import base64
import datetime
import json
import math
import re
from typing import Any

import pytest
from cql_engine import run_cql
from dtr_patients import chart
from fhir_support import EXAMPLES, bundle, example_bundle

from service.fhir.dtr.library import prepopulation
from service.fhir.intake import case_from_bundle, field_sources
from service.fhir.outcome import OperationOutcomeError

SERVICE_DATES = ("2026-12-01", "2024-06-15", "2021-01-01")


@pytest.fixture(scope="module")
def dictionary(evaluator):
    return evaluator.dictionary


@pytest.fixture(scope="module")
def library(dictionary):
    """A library pre-populating every field of the dictionary (each policy's is a subset)."""
    return prepopulation(dictionary, field_sources(dictionary), list(dictionary.fields), policy_id="all-fields",
                         policy_version="1.0.0", title="Every field", base="http://payer.example/fhir")


def intake_values(bundle_json: dict[str, Any], dictionary: Any, day: str) -> dict[str, Any] | None:
    """What the FHIR intake reads, by field path; None when it refuses the Bundle."""
    try:
        read = case_from_bundle(bundle_json, dictionary, external_id="X", service_date=day)
    except OperationOutcomeError:
        return None
    values = {}
    for key, value in read.fhir.payload.items():
        if isinstance(value, dict):
            values.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            values[key] = value
    return values


def same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-9)
    return a == b


def compare(library, dictionary, bundles: list[dict[str, Any]]) -> tuple[int, set[str]]:
    """Run both readers on every (Bundle, service date); return how many were compared and the
    fields that had a value at least once. Fails listing every difference."""
    cases, expected = [], []
    for b in bundles:
        for day in SERVICE_DATES:
            values = intake_values(b, dictionary, day)
            if values is not None:
                cases.append((b, day))
                expected.append(values)
    paths = list(library.defines)
    results = run_cql(library.elm, list(library.value_sets), paths, cases)
    differences, filled = [], set()
    for (b, day), values, prefilled in zip(cases, expected, results):
        for path in paths:
            want, got = values.get(path), prefilled[path]
            if want is not None:
                filled.add(path)
            if not same(want, got):
                differences.append(f"{b.get('identifier', {}).get('value')} on {day}: {path}: intake {want!r}, CQL {got!r}")
    assert not differences, f"{len(differences)} differences:\n" + "\n".join(differences[:40])
    return len(cases), filled


def test_the_library_carries_cql_and_its_elm_defining_the_same_names(library):
    contents = {c["contentType"]: base64.b64decode(c["data"]).decode() for c in library.library["content"]}
    assert set(contents) == {"text/cql", "application/elm+json"}
    elm = json.loads(contents["application/elm+json"])
    assert elm == library.elm
    elm_names = [s["name"] for s in elm["library"]["statements"]["def"] if s.get("type") != "FunctionDef"]
    cql_names = re.findall(r'^define "([^"]+)":', contents["text/cql"], flags=re.MULTILINE)
    assert cql_names == elm_names[1:]  # the ELM's first statement is the Patient context's
    assert set(library.defines.values()) <= set(elm_names)
    functions = [s["name"] for s in elm["library"]["statements"]["def"] if s.get("type") == "FunctionDef"]
    assert re.findall(r'^define function "([^"]+)"', contents["text/cql"], flags=re.MULTILINE) == functions
    assert elm["library"]["identifier"] == {"id": library.name, "version": library.version}
    assert f"library {library.name} version '{library.version}'" in contents["text/cql"]
    for value_set in library.value_sets:  # every value set the logic names is in the package, expanded
        assert f"valueset \"{value_set['title']}\": '{value_set['url']}' version '{value_set['version']}'" in contents["text/cql"]
        assert value_set["expansion"]["contains"]


def test_versions_follow_the_content(dictionary):
    sources = field_sources(dictionary)
    make = lambda paths: prepopulation(dictionary, sources, paths, policy_id="p", policy_version="2.0.0",
                                       title="t", base="http://b/fhir")
    one, again, other = make(["patient.bmi"]), make(["patient.bmi"]), make(["patient.bmi", "low_back_pain.nrs"])
    assert one.version == again.version and one.version.startswith("2.0.0-")
    assert other.version != one.version


def test_the_worked_example_prefills_what_the_intake_reads(library, dictionary):
    compared, filled = compare(library, dictionary, [example_bundle()])
    assert compared == len(SERVICE_DATES)
    assert {"patient.bmi", "low_back_pain.nrs", "low_back_pain.odi_percent", "patient.age_years",
            "low_back_pain.duration_months", "conservative_care.physical_therapy_outcome"} <= filled


def real_examples() -> list[dict[str, Any]]:
    if not EXAMPLES.is_dir():
        pytest.skip(f"the shared example files are not at {EXAMPLES}")
    clinical = ("Patient", "Observation", "Condition", "Procedure", "QuestionnaireResponse")
    resources = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
    resources = [r for r in resources if r.get("resourceType") in clinical]
    # The files come from several projects, each about its own patient; one request is about one
    # patient (the intake refuses two), so each file's subject is pointed at one patient here.
    patient = {"resourceType": "Patient", "id": "real-1", "birthDate": "1958-03-14"}
    everything = [_about(r, "Patient/real-1") for r in resources if r["resourceType"] != "Patient"]
    bundles = [bundle(r, identifier=f"REAL-{n}-{r.get('id')}") for n, r in enumerate(resources)
               if r["resourceType"] == "Patient"]
    bundles += [bundle(patient, r, identifier=f"REAL-{n}-{r.get('id')}") for n, r in enumerate(everything)]
    bundles.append(bundle(patient, *everything, identifier="REAL-ALL"))
    return bundles


def _about(resource: dict[str, Any], patient: str) -> dict[str, Any]:
    """A copy of ``resource`` whose subject (or patient) is ``patient``."""
    copy = json.loads(json.dumps(resource))
    for element in ("subject", "patient"):
        if isinstance(copy.get(element), dict):
            copy[element] = {"reference": patient}
    return copy


def test_real_example_files_prefill_what_the_intake_reads(library, dictionary):
    bundles = real_examples()
    compared, filled = compare(library, dictionary, bundles)
    assert compared >= 2 * len(bundles)  # the intake accepts nearly all of them
    assert {"patient.bmi", "low_back_pain.nrs", "low_back_pain.odi_percent", "patient.age_years",
            "diagnosis_codes"} <= filled


def test_generated_charts_prefill_what_the_intake_reads_for_every_declared_field(library, dictionary):
    bundles = [chart(seed, dictionary) for seed in range(120)]
    compared, filled = compare(library, dictionary, bundles)
    assert compared >= len(bundles)
    declared = {path for path, spec in dictionary.fields.items() if spec.fhir}
    assert declared <= filled, f"never exercised: {sorted(declared - filled)}"


def test_without_a_service_date_the_chart_is_read_as_of_today(library, dictionary):
    today = datetime.date.today()
    b = json.loads(json.dumps(example_bundle()))
    bmi = next(e["resource"] for e in b["entry"] if e["resource"].get("id") == "bmi-1")
    later = dict(bmi, id="bmi-later", effectiveDateTime=(today + datetime.timedelta(days=30)).isoformat())
    later["valueQuantity"] = dict(bmi["valueQuantity"], value=40.0)
    b["entry"].append({"fullUrl": "urn:uuid:later", "resource": later})
    (row,) = run_cql(library.elm, list(library.value_sets), ["patient.bmi", "As Of"], [(b, None)])
    assert row["As Of"] == today.isoformat()
    assert row["patient.bmi"] == bmi["valueQuantity"]["value"]  # the future value is not read
