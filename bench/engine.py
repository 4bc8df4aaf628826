"""Microseconds per case for the ISASS policy, layer by layer, in one run; print JSON figures.

    python bench/engine.py [--cases 2000] [--repeat 5]

Every layer runs on the same generated cases (``generate`` from bench/cli_batch.py):

- ``floor``: the policy's Kleene logic evaluated in plain Python from its ``service.policy.rules`` Expr
  trees, every node's truth recorded as the engine reports them: what the logic itself costs;
- ``durable_rules``: raw durable-rules, ``assert_fact`` + ``delete_state`` of the same facts on the
  same compiled ruleset, registered on a bare ``Host`` whose actions only append the rule's name;
- ``engine``: our ``RulesEngine.run`` (fact serialization, lock, sentinel and exception checks);
- ``validation``: ``Evaluator.parse`` (the strict case model, the policy version in force);
- ``json``: a result written as JSON text the way the CLI writes it (``service.cli.json_text``,
  pydantic-core's serializer); ``json_stdlib`` for comparison: ``json.dumps`` (as the API's
  storage does, compact, ``ensure_ascii=False``);
- ``evaluate``: ``Evaluator.evaluate`` (validation + engine + result building);
- ``evaluate_json``: ``json_text(Evaluator.evaluate(case))``, the whole path a case takes.

``result_building_and_rest`` is derived: evaluate - validation - engine. It holds reading the
facts from the case, the truths from what fired, writing reasons, evidence, citations, id and
timestamp, and what running all layers back to back costs beyond running each alone (caches).
The wrapper is everything but durable-rules: evaluate_json - durable_rules; the issue's target is
``wrapper_over_durable_rules`` <= 1. Layers are timed on chunks of cases in turn (see ``timed``)
after a warm-up; figures are medians over chunks and repetitions.
Before timing, the floor's truths and the raw engine's fired rules are checked against ours.
"""

from __future__ import annotations

import argparse
import gc
import json
import operator
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from durable.engine import Host

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_batch import generate  # noqa: E402  (bench/ is a folder of scripts, not a package)

from service.policy.case import Case  # noqa: E402
from service.cli import json_text  # noqa: E402
from service.policy.compiler import DISCRIMINATOR, compile_policy  # noqa: E402
from service.engine.evaluation import Evaluator  # noqa: E402
from service.policy.rules import AnyOf, Comparison, Expr, Not  # noqa: E402

# --- the floor: the same Kleene logic in plain Python -------------------------------------------

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "equals": operator.eq,
    "not_equals": operator.ne,
    "at_least": operator.ge,
    "less_than": operator.lt,
    "at_most": operator.le,
    "more_than": operator.gt,
    "one_of": lambda value, allowed: value in allowed,
    "none_of": lambda value, allowed: value not in allowed,
}
_NOTHING: dict[str, Any] = {}

Node = Callable[[dict, dict], "bool | None"]


def python_logic(expr: Expr, node_id: str) -> Node:
    """A function ``(facts, truths) -> True / False / None`` that records each known node's truth."""
    if isinstance(expr, Comparison):
        section, name = expr.field.split(".")
        test, operand = _COMPARE[expr.operator], expr.value

        def comparison(facts: dict, truths: dict) -> bool | None:
            value = facts.get(section, _NOTHING).get(name)
            if value is None:
                return None
            truths[node_id] = truth = test(value, operand)
            return truth

        return comparison
    if isinstance(expr, Not):
        inner = python_logic(expr.part, f"{node_id}.0")

        def negation(facts: dict, truths: dict) -> bool | None:
            truth = inner(facts, truths)
            if truth is None:
                return None
            truths[node_id] = not truth
            return not truth

        return negation
    parts = [python_logic(part, f"{node_id}.{i}") for i, part in enumerate(expr.parts)]
    settles = isinstance(expr, AnyOf)  # one true part settles an any, one false part an all

    def combination(facts: dict, truths: dict) -> bool | None:
        seen = [part(facts, truths) for part in parts]
        if settles in seen:
            truth = settles
        elif None in seen:
            return None
        else:
            truth = not settles
        truths[node_id] = truth
        return truth

    return combination


# --- raw durable-rules --------------------------------------------------------------------------


class BareHost(Host):
    def _run(self) -> None:  # no background dispatch threads: they would race the timed loop
        pass


def raw_durable_rules(compiled) -> tuple[Callable[[dict], list[str]], str]:
    """``run(facts) -> fired rule names`` on a bare Host: assert_fact, then delete_state."""
    host, fired = BareHost(), []
    name = f"bench-raw-{compiled.name}"

    def recorder(rule_name: str) -> Callable[[Any], None]:
        return lambda _closure: fired.append(rule_name)

    host.register_rulesets({name: {rule_name: {**json.loads(json.dumps(rule)), "run": recorder(rule_name)}
                                   for rule_name, rule in compiled.ruleset.items()}})
    sids = iter(range(1, 1 << 62))

    def run(facts: dict) -> list[str]:
        sid = str(next(sids))
        fired.clear()
        host.assert_fact(name, {**facts, **DISCRIMINATOR, "sid": sid})
        host.delete_state(name, sid)
        return fired

    return run, name


# --- the run ------------------------------------------------------------------------------------


def facts_of(case: Case, fields: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The documented values the rules read, nested as in the case (what the engine is given)."""
    facts: dict[str, dict[str, Any]] = {}
    for path in fields:
        value = case.value(path)
        if value is not None:
            section, name = path.split(".")
            facts.setdefault(section, {})[name] = value
    return facts


def timed(layers: dict[str, tuple[Callable[[Any], Any], list]], repeat: int, chunk: int) -> dict[str, float]:
    """Median microseconds per case of each layer.

    Each repetition walks the cases in chunks, running every layer on a chunk before the next, so
    a noisy neighbour or a frequency change slows all layers alike; the median is over chunks.
    """
    for function, inputs in layers.values():  # warm-up
        for item in inputs[:chunk]:
            function(item)
    samples: dict[str, list[float]] = {name: [] for name in layers}
    count = min(len(inputs) for _, inputs in layers.values())
    for _ in range(repeat):
        for start in range(0, count, chunk):
            for name, (function, inputs) in layers.items():
                part = inputs[start:start + chunk]
                began = time.perf_counter()
                for item in part:
                    function(item)
                samples[name].append((time.perf_counter() - began) / len(part) * 1e6)
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=100, help="cases per timed sample")
    args = parser.parse_args()

    evaluator = Evaluator.from_rules_dir()
    payloads = generate(args.cases)
    parsed = [evaluator.parse(payload) for payload in payloads]
    versions = {version.key: version for _, version, _ in parsed}
    if len(versions) != 1:
        sys.exit(f"expected one policy version for every generated case, got {sorted(versions)}")
    version = next(iter(versions.values()))
    compiled = compile_policy(version)
    facts = [facts_of(case, compiled.fields) for case, _, _ in parsed]
    results = [evaluator.evaluate_parsed(*p) for p in parsed]

    floor_rules = [python_logic(rule.logic, rule.id) for rule in (*version.criteria, *version.flags)]

    def floor(case_facts: dict) -> dict[str, bool]:
        truths: dict[str, bool] = {}
        for rule in floor_rules:
            rule(case_facts, truths)
        return truths

    durable_run, _ = raw_durable_rules(compiled)
    for case_facts in facts:  # every layer must compute the same thing
        ours = evaluator.engine.run(compiled.name, case_facts)
        if set(durable_run(case_facts)) != ours:
            sys.exit(f"raw durable-rules and RulesEngine disagree on {case_facts}")
        if floor(case_facts) != compiled.node_truths(ours):
            sys.exit(f"the plain-Python floor and durable-rules disagree on {case_facts}")

    # The inputs prepared above (payloads, cases, facts, 2,000 results) would otherwise be scanned
    # by every full garbage collection the timed loops trigger: a cost of this benchmark's heap,
    # not of evaluating a case.
    gc.collect()
    gc.freeze()

    def evaluate_json(payload: dict) -> str:
        return json_text(evaluator.evaluate(payload), None)

    us = timed({
        "floor": (floor, facts),
        "durable_rules": (durable_run, facts),
        "engine": (lambda case_facts: evaluator.engine.run(compiled.name, case_facts), facts),
        "validation": (evaluator.parse, payloads),
        "json": (lambda result: json_text(result, None), results),
        "json_stdlib": (lambda result: json.dumps(result, separators=(",", ":"), ensure_ascii=False), results),
        "evaluate": (evaluator.evaluate, payloads),
        "evaluate_json": (evaluate_json, payloads),
    }, args.repeat, args.chunk)

    durable = us["durable_rules"]
    layers = {
        "engine_wrapper": round(us["engine"] - durable, 1),
        "validation": us["validation"],
        "result_building_and_rest": round(us["evaluate"] - us["validation"] - us["engine"], 1),
        "json": us["json"],
    }
    wrapper = round(us["evaluate_json"] - durable, 1)
    print(json.dumps({
        "benchmark": "engine",
        "policy": version.key,
        "cases": args.cases,
        "repeat": args.repeat,
        "rules_fired_per_case": round(sum(len(evaluator.engine.run(compiled.name, f)) for f in facts) / len(facts), 1),
        "us_per_case": us,
        "wrapper_us_per_case": {**layers, "total": wrapper},
        "ratios": {
            "wrapper_over_durable_rules": round(wrapper / durable, 2),
            "wrapper_over_durable_rules_with_json_stdlib": round((wrapper - us["json"] + us["json_stdlib"]) / durable, 2),
            **{f"{name}_over_durable_rules": round(value / durable, 2) for name, value in layers.items()},
            "evaluate_json_over_durable_rules": round(us["evaluate_json"] / durable, 2),
            "durable_rules_over_floor": round(durable / us["floor"], 1),
            "evaluate_json_over_floor": round(us["evaluate_json"] / us["floor"], 1),
        },
        "cases_per_second_evaluate_json": round(1e6 / us["evaluate_json"]),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }, indent=2))


if __name__ == "__main__":
    main()
