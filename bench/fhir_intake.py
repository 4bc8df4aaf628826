"""Microseconds per case on the FHIR path next to the plain-JSON path, in one run; print JSON.

    python bench/fhir_intake.py [--cases 500] [--repeat 5]

(Not ``bench/fhir.py``: scripts here put bench/ on sys.path, where a fhir.py would shadow the
``fhir`` package of fhir.resources.)

Cases are variants of the worked example (examples/bundle.json: 10 resources, 9 of them read):
each Bundle gets its own NRS, BMI, birth date and ODI answers, and its plain twin is the case the
FHIR intake reads from it, so both paths evaluate the same facts. Layers, timed on chunks of
cases in turn after a warm-up (medians over chunks and repetitions):

- ``plain``: ``json.loads`` of the case text + ``Evaluator.evaluate`` (what the API does for JSON);
- ``fhir``: ``read_json`` of the Bundle text + ``evaluate_bundle`` (read, validate, map, evaluate, cite);
- ``fhir_read``: ``read_json`` + ``read_bundle`` only (the FHIR intake without the evaluation);
- ``fhir_validation``: fhir.resources R4B validation of the resources read, alone.

``fhir_over_plain`` is the ratio the FHIR path costs; on this shared 2-CPU machine absolute
figures move with the neighbours' load, the ratio much less.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.engine.evaluation import Evaluator  # noqa: E402
from service.evaluations.bundle import evaluate_bundle, read_bundle  # noqa: E402
from service.fhir.parse import bundle_entries, read_json, validate  # noqa: E402


def variants(count: int, seed: int = 7) -> list[dict[str, Any]]:
    base = json.loads((ROOT / "examples" / "bundle.json").read_text())
    rng = random.Random(seed)
    bundles = []
    for index in range(count):
        bundle = copy.deepcopy(base)
        bundle["identifier"]["value"] = f"BENCH-{index}"
        for entry in bundle["entry"]:
            resource = entry["resource"]
            kind, rid = resource["resourceType"], resource.get("id")
            if kind == "Patient":
                resource["birthDate"] = f"{rng.randint(1940, 1990)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            elif rid == "pain-1":
                resource["valueInteger"] = rng.randint(0, 10)
            elif rid == "bmi-1":
                resource["valueQuantity"]["value"] = round(rng.uniform(18, 45), 1)
            elif rid == "odi-1":
                for item in resource["item"]:
                    item["answer"][0]["valueCoding"]["extension"][0]["valueDecimal"] = rng.randint(0, 5)
        bundles.append(bundle)
    return bundles


def timed(layers: dict[str, Callable[[Any], Any]], inputs: dict[str, list[Any]], repeat: int,
          chunk: int = 50) -> dict[str, float]:
    """Median microseconds per case for each layer, layers interleaved chunk by chunk."""
    samples: dict[str, list[float]] = {name: [] for name in layers}
    count = len(next(iter(inputs.values())))
    for _ in range(repeat):
        for start in range(0, count, chunk):
            for name, layer in layers.items():
                batch = inputs[name][start:start + chunk]
                began = time.perf_counter()
                for item in batch:
                    layer(item)
                samples[name].append((time.perf_counter() - began) / len(batch) * 1e6)
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    evaluator = Evaluator.from_rules_dir()
    bundles = variants(args.cases)
    bundle_texts = [json.dumps(b) for b in bundles]
    plain_texts = [json.dumps(read_bundle(evaluator, b).case) for b in bundles]
    # The same facts both ways: the findings must agree before anything is timed.
    for text, plain in zip(bundle_texts[:50], plain_texts[:50]):
        from_fhir = evaluate_bundle(evaluator, read_json(text))[1]
        from_json = evaluator.evaluate(json.loads(plain))
        assert [c["status"] for c in from_fhir["criteria"]] == [c["status"] for c in from_json["criteria"]]
    read_lists = []
    dictionary = evaluator.catalog.dictionary
    from service.fhir.intake import field_sources
    from service.fhir.readers import relevant

    groups = [s for group in field_sources(dictionary).values() for s in group]
    for bundle in bundles:
        read_lists.append([i for i in bundle_entries(bundle) if any(relevant(s, i) for s in groups)
                           or i.type == "QuestionnaireResponse"])

    layers = {
        "plain": lambda text: evaluator.evaluate(json.loads(text)),
        "fhir": lambda text: evaluate_bundle(evaluator, read_json(text)),
        "fhir_read": lambda text: read_bundle(evaluator, read_json(text)),
        "fhir_validation": validate,
    }
    inputs = {"plain": plain_texts, "fhir": bundle_texts, "fhir_read": bundle_texts, "fhir_validation": read_lists}
    for name, layer in layers.items():  # warm-up
        for item in inputs[name][:50]:
            layer(item)
    gc.collect()
    gc.freeze()
    figures = timed(layers, inputs, args.repeat)
    figures["fhir_over_plain"] = round(figures["fhir"] / figures["plain"], 2)
    print(json.dumps({"microseconds_per_case": figures, "cases": args.cases, "repeat": args.repeat,
                      "bundle_bytes": len(bundle_texts[0]), "case_bytes": len(plain_texts[0]),
                      "resources_per_bundle": len(bundles[0]["entry"])}, indent=2))


if __name__ == "__main__":
    main()
