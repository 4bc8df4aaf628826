"""Microseconds per case for the ISASS policy, layer by layer, in one run; print JSON figures.

    python bench/engine.py [--cases 2000] [--repeat 5]

Every layer runs on the same generated cases (``generate`` from bench/cli_batch.py):

- ``floor``: the policy's Kleene logic evaluated in plain Python from its ``service.rules`` Expr
  trees, every node's truth recorded as the engine reports them: what the logic itself costs;
- ``durable_rules``: raw durable-rules, ``assert_fact`` + ``delete_state`` of the same facts on the
  same compiled ruleset, registered on a bare ``Host`` whose actions only append the rule's name;
- ``engine``: our ``RulesEngine.run`` (fact serialization, lock, sentinel and exception checks);
- ``validation``: ``Evaluator.parse`` (the strict case model, the policy version in force);
- ``json``: ``json.dumps`` of a result, as the CLI and the API write it;
- ``evaluate``: ``Evaluator.evaluate`` (validation + engine + result building);
- ``evaluate_json``: ``json.dumps(Evaluator.evaluate(case))``, the whole path a case takes.

``result_building`` is derived: evaluate - validation - engine (reading the facts from the case,
the truths from what fired, and writing reasons, evidence, citations, ids and timestamp).
The wrapper is everything but durable-rules: evaluate_json - durable_rules; the issue's target is
``wrapper_over_durable_rules`` <= 1. Each layer is timed over all cases per repetition (layers
interleaved, so a noisy neighbour slows them alike) after a warm-up pass; figures are medians.
Before timing, the floor's truths and the raw engine's fired rules are checked against ours.
"""

from __future__ import annotations

import argparse
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

from service.case import Case  # noqa: E402
from service.compiler import DISCRIMINATOR, compile_policy  # noqa: E402
from service.evaluation import Evaluator  # noqa: E402
from service.rules import AnyOf, Comparison, Expr, Not  # noqa: E402

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


def timed(layers: dict[str, tuple[Callable[[Any], Any], list]], repeat: int, warmup: int) -> dict[str, float]:
    """Median microseconds per case of each layer over ``repeat`` interleaved passes."""
    for function, inputs in layers.values():
        for item in inputs[:warmup]:
            function(item)
    samples: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(repeat):
        for name, (function, inputs) in layers.items():
            started = time.perf_counter()
            for item in inputs:
                function(item)
            samples[name].append((time.perf_counter() - started) / len(inputs) * 1e6)
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=300, help="cases per layer run before timing")
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

    def evaluate_json(payload: dict) -> str:
        return json.dumps(evaluator.evaluate(payload), ensure_ascii=False)

    us = timed({
        "floor": (floor, facts),
        "durable_rules": (durable_run, facts),
        "engine": (lambda case_facts: evaluator.engine.run(compiled.name, case_facts), facts),
        "validation": (evaluator.parse, payloads),
        "json": (lambda result: json.dumps(result, ensure_ascii=False), results),
        "evaluate": (evaluator.evaluate, payloads),
        "evaluate_json": (evaluate_json, payloads),
    }, args.repeat, args.warmup)

    durable = us["durable_rules"]
    layers = {
        "engine_wrapper": round(us["engine"] - durable, 1),
        "validation": us["validation"],
        "result_building": round(us["evaluate"] - us["validation"] - us["engine"], 1),
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
