"""Microseconds per case on the FHIR path next to the plain-JSON path, in one run; print JSON.

    python bench/fhir_intake.py [--cases 500] [--repeat 5]
    python bench/fhir_intake.py --padding [--repeat 5]

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

``--padding`` (issue 16, finding 3: a 1 MiB Bundle of empty entries took 3.76 s against 6.8 ms
for the example): what ``read_json`` + ``evaluate_bundle`` costs for padded Bundles next to the
example Bundle, timed in turn, with each one's answer (``result`` or the OperationOutcome's issue
code) and the resources validated. The target: every padded Bundle under 20 times the example.
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


MIB = 1024 * 1024


def padded_bundles() -> dict[str, str]:
    """The example Bundle, and padded variants of it, as the JSON text a client sends."""
    from service.fhir.parse import MAX_ENTRIES, MAX_OBJECTS

    base = json.loads((ROOT / "examples" / "bundle.json").read_text())
    example = json.dumps(base, separators=(",", ":"))
    room = MAX_ENTRIES - len(base["entry"])

    def bundle(extra: list[Any]) -> str:
        return json.dumps({**base, "entry": base["entry"] + extra}, separators=(",", ":"))

    def to_one_mib(template: dict[str, Any], key: str, count: int) -> list[Any]:
        """``count`` entries of ``template`` padded so that the Bundle is just under 1 MiB."""
        entry = len(json.dumps({"resource": {**template, key: "", "id": f"pad-{count}"}}, separators=(",", ":"))) + 1
        filler = "x" * max(0, (MIB - 1024 - len(example)) // count - entry)
        return [{"resource": {**template, key: filler, "id": f"pad-{i}"}} for i in range(count)]

    basic = {"resourceType": "Basic", "code": {"text": "padding"}, "id": ""}
    other = {"resourceType": "Observation", "status": "final", "code": {"coding": [
        {"system": "http://loinc.org", "code": "8867-4"}]}, "valueQuantity": {"value": 70}, "id": ""}
    return {
        "example": example,
        "1 MiB of empty entries (finding 3)": bundle([{}] * ((MIB - 1024 - len(example)) // 3)),
        f"{room} empty entries (the most under the cap)": bundle([{}] * room),
        f"1 MiB in {room} unread Basic resources": bundle(to_one_mib(basic, "language", room)),
        f"1 MiB in {room} Observations of another code": bundle(to_one_mib(other, "language", room)),
        "1 MiB in one unread resource of empty objects": bundle(
            [{"resource": {"resourceType": "Basic", "id": "pad", "extension": [{}] * ((MIB - 1024 - len(example)) // 3)}}]),
        f"{MAX_OBJECTS - 200:,} empty objects in one unread resource (the most under the cap)": bundle(
            [{"resource": {"resourceType": "Basic", "id": "pad", "extension": [{}] * (MAX_OBJECTS - 200)}}]),
        "1 MiB of numbers in one unread resource": bundle(
            [{"resource": {"resourceType": "Basic", "id": "pad", "extension": [0] * ((MIB - 1024 - len(example)) // 2)}}]),
    }


def padding(repeat: int) -> dict[str, Any]:
    """Milliseconds per request for each padded Bundle and the example, timed in turn, two ways:
    ``read_json`` + ``evaluate_bundle`` in process, and a whole ``POST /v1/evaluations`` through the
    app (key check, evaluation, SQLite commit; Starlette's TestClient, no network)."""
    import tempfile

    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.fhir import parse
    from service.fhir.outcome import OperationOutcomeError
    from service.settings import Settings
    from service.store.database import Database
    from service.store.keys import create_key

    evaluator = Evaluator.from_rules_dir()
    texts = padded_bundles()
    validated: list[str] = []
    real = parse.validation_issues

    def counting(item: Any) -> Any:
        validated.append(item.path)
        return real(item)

    def in_process(text: str) -> str:
        try:
            evaluate_bundle(evaluator, read_json(text))
            return "result"
        except OperationOutcomeError as error:
            return ", ".join(sorted({issue.code for issue in error.issues}))

    answers, resources = {}, {}
    parse.validation_issues = counting
    for name, text in texts.items():
        validated.clear()
        answers[name] = in_process(text)
        resources[name] = sum(path != "Bundle" for path in validated)
    parse.validation_issues = real

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        Database(url).migrate()
        key = create_key(Database(url), "intake")[1]
        settings = Settings(data_dir=Path(folder), database_url=url, rate_limit_per_minute=0)  # 1 MiB bodies
        with TestClient(create_app(settings, evaluator)) as client:
            headers = {"X-API-Key": key, "Content-Type": "application/fhir+json"}

            def through_the_app(text: str) -> int:
                return client.post("/v1/evaluations", content=text.encode(), headers=headers).status_code

            statuses = {name: through_the_app(text) for name, text in texts.items()}
            figures = {layer: _timed_in_turn(run, texts, repeat)
                       for layer, run in (("in_process", in_process), ("through_the_app", through_the_app))}
    return {name: {"bytes": len(texts[name]), "answer": answers[name], "status": statuses[name],
                   "resources_validated": resources[name],
                   **{f"{layer}_ms": figures[layer][name][0] for layer in figures},
                   **{f"{layer}_over_example": figures[layer][name][1] for layer in figures}}
            for name in texts}


def _timed_in_turn(run: Callable[[str], Any], texts: dict[str, str], repeat: int) -> dict[str, tuple[float, float]]:
    """Median milliseconds per request for each text, and its ratio to the example's."""
    samples: dict[str, list[float]] = {name: [] for name in texts}
    for _ in range(repeat):
        for name, text in texts.items():
            runs = 20 if len(text) < 100_000 else 2
            began = time.perf_counter()
            for _ in range(runs):
                run(text)
            samples[name].append((time.perf_counter() - began) / runs * 1000)
    example = statistics.median(samples["example"])
    return {name: (round(statistics.median(values), 2), round(statistics.median(values) / example, 1))
            for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--padding", action="store_true", help="padded Bundles next to the example (finding 3)")
    args = parser.parse_args()
    if args.padding:
        print(json.dumps({"padding": padding(args.repeat), "repeat": args.repeat}, indent=2))
        return

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
