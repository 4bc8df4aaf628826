"""Microseconds per case for the ISASS policy, layer by layer, in one run; print JSON figures.

    python bench/engine.py [--cases 2000] [--repeat 5]

Every layer runs on the same cases: the first ``--cases`` of ../shared/bench/cases-20000.json.gz,
or generated ones (``--generated``, or where that file is absent; see bench/cli_batch.py):

- ``floor``: the policy's Kleene logic evaluated in plain Python from its ``service.policy.rules``
  Expr trees, every node's truth recorded as the engine reports them: what the logic itself costs;
- ``c_engine``: durable-rules' C extension alone, on facts already serialized: ``assert_fact``,
  every queued action started and completed, ``retract_fact`` (what ``RulesEngine`` calls);
- ``python_host``: durable-rules' own Python host on the same compiled ruleset (``assert_fact`` +
  ``delete_state`` on a bare ``Host`` whose actions append the rule's name): the engine before;
- ``engine``: our ``RulesEngine.run`` (fact serialization, lock, reading what fired, checks);
- ``validation``: ``Evaluator.parse`` (the strict case model, the policy version in force);
- ``result``: ``ResultBuilder.build_json`` alone, on the case's values and node truths: the
  result written as JSON (from per-pattern templates; see service/engine/result.py);
- ``evaluate_json``: ``Evaluator.evaluate_json(case).json``, the whole path a case takes
  (validation, engine, result as the JSON bytes the API returns and the CLI prints).

``result_building_and_rest`` is derived: evaluate_json - validation - engine (reading the case's
values, the truths from what fired, the result, id and timestamp). Targets (issue 22):
``engine_over_floor`` <= 6 and ``evaluate_json`` <= 120 µs. Layers are timed on chunks of cases in
turn (see ``timed``) after a warm-up; figures are medians over chunks and repetitions. Before
timing, the floor's truths, the raw C engine's and the Python host's fired rules are checked
against ours.
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

import durable_rules_engine
from durable.engine import Host

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_batch import bench_cases  # noqa: E402  (bench/ is a folder of scripts, not a package)

from service.engine.durable import case_fact_json, fire_actions  # noqa: E402
from service.engine.evaluation import Evaluator, _documented, by_section  # noqa: E402
from service.policy.compiler import DISCRIMINATOR, compile_policy  # noqa: E402
from service.policy.logic import AnyOf, Comparison, Expr, Not  # noqa: E402

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


def python_logic(expr: Expr, node_id: str, keys: dict[str, str]) -> Node:
    """A function ``(facts, truths) -> True / False / None`` that records each known node's truth
    (``keys``: each field's name in the facts, as the compiled ruleset names it)."""
    if isinstance(expr, Comparison):
        section, name = keys[expr.field].split(".")
        test, operand = _COMPARE[expr.operator], expr.value

        def comparison(facts: dict, truths: dict) -> bool | None:
            value = facts.get(section, _NOTHING).get(name)
            if value is None:
                return None
            truths[node_id] = truth = test(value, operand)
            return truth

        return comparison
    if isinstance(expr, Not):
        inner = python_logic(expr.part, f"{node_id}.0", keys)

        def negation(facts: dict, truths: dict) -> bool | None:
            truth = inner(facts, truths)
            if truth is None:
                return None
            truths[node_id] = not truth
            return not truth

        return negation
    parts = [python_logic(part, f"{node_id}.{i}", keys) for i, part in enumerate(expr.parts)]
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


# --- durable-rules: its C extension alone, and its own Python host ---------------------------


def c_engine(compiled) -> Callable[[str], set[str]]:
    """``run(fact_text) -> fired rule names`` on the C extension as RulesEngine drives it, without
    its lock, checks and error handling."""
    handle = durable_rules_engine.create_ruleset(f"bench-c-{compiled.name}", json.dumps(compiled.ruleset))
    retraction = '{"sid":"1","id":"case"}'
    width = len(compiled.sentinel)

    def run(text: str) -> set[str]:
        _, offset = durable_rules_engine.assert_fact(handle, text)
        fired = fire_actions(handle, offset, width)
        durable_rules_engine.retract_fact(handle, retraction)
        return fired

    return run


class BareHost(Host):
    def _run(self) -> None:  # no background dispatch threads: they would race the timed loop
        pass


def python_host(compiled) -> Callable[[dict], list[str]]:
    """``run(facts) -> fired rule names`` on a bare Host: assert_fact, then delete_state."""
    host, fired = BareHost(), []
    name = f"bench-host-{compiled.name}"

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

    return run


# --- the run ------------------------------------------------------------------------------------


def timed(layers: dict[str, tuple[Callable[[Any], Any], list]], repeat: int, chunk: int) -> dict[str, float]:
    """Median microseconds of CPU time (this process's) per case of each layer: on a shared machine
    the time other processes take is not counted.

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
                began = time.process_time()
                for item in part:
                    function(item)
                samples[name].append((time.process_time() - began) / len(part) * 1e6)
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=100, help="cases per timed sample")
    parser.add_argument("--generated", action="store_true", help="generated cases, not the shared bench cases")
    args = parser.parse_args()

    evaluator = Evaluator.from_rules_dir()
    payloads, source = bench_cases(args.cases, args.generated)
    parsed = [evaluator.parse(payload) for payload in payloads]
    versions = {version.key: version for _, version, _ in parsed}
    if len(versions) != 1:
        sys.exit(f"expected one policy version for every generated case, got {sorted(versions)}")
    version = next(iter(versions.values()))
    compiled = compile_policy(version)
    sections = by_section(evaluator.dictionary.fields)
    documented = [_documented(case, sections) for case, _, _ in parsed]
    facts = [compiled.facts(values) for values in documented]
    fact_texts = [case_fact_json(case_facts) for case_facts in facts]
    builder = evaluator._builders[version.key]
    written = [(case.external_id, values, compiled.node_truths(evaluator.engine.run(compiled.name, case_facts)))
               for (case, _, _), values, case_facts in zip(parsed, documented, facts)]

    floor_rules = [python_logic(rule.logic, rule.id, compiled.keys) for rule in (*version.criteria, *version.flags)]

    def floor(case_facts: dict) -> dict[str, bool]:
        truths: dict[str, bool] = {}
        for rule in floor_rules:
            rule(case_facts, truths)
        return truths

    c_run, host_run = c_engine(compiled), python_host(compiled)
    for case_facts, text in zip(facts, fact_texts):  # every layer must compute the same thing
        ours = evaluator.engine.run(compiled.name, case_facts)
        if c_run(text) != ours or set(host_run(case_facts)) != ours:
            sys.exit(f"the C engine, the Python host and RulesEngine disagree on {case_facts}")
        if floor(case_facts) != compiled.node_truths(ours):
            sys.exit(f"the plain-Python floor and durable-rules disagree on {case_facts}")

    # The inputs prepared above (payloads, cases, facts, 2,000 results) would otherwise be scanned
    # by every full garbage collection the timed loops trigger: a cost of this benchmark's heap,
    # not of evaluating a case.
    gc.collect()
    gc.freeze()

    def evaluate_json(payload: dict) -> bytes:
        return evaluator.evaluate_json(payload).json

    def result(item: tuple) -> bytes:
        external_id, values, truths = item
        return builder.build_json(external_id, values, truths, evaluation_id="0", evaluated_at="0",
                                  service_date="2026-12-01").json

    us = timed({
        "floor": (floor, facts),
        "c_engine": (c_run, fact_texts),
        "python_host": (host_run, facts),
        "engine": (lambda case_facts: evaluator.engine.run(compiled.name, case_facts), facts),
        "validation": (evaluator.parse, payloads),
        "result": (result, written),
        "evaluate_json": (evaluate_json, payloads),
    }, args.repeat, args.chunk)

    layers = {
        "engine": us["engine"],
        "of_which_c_engine": us["c_engine"],
        "validation": us["validation"],
        "result_building_and_rest": round(us["evaluate_json"] - us["validation"] - us["engine"], 1),
        "of_which_result": us["result"],
    }
    print(json.dumps({
        "benchmark": "engine",
        "policy": version.key,
        "cases": args.cases,
        "source": source,
        "repeat": args.repeat,
        "rules_fired_per_case": round(sum(len(evaluator.engine.run(compiled.name, f)) for f in facts) / len(facts), 1),
        "us_per_case": us,
        "whole_path_us_per_case": layers,
        "ratios": {
            "engine_over_floor": round(us["engine"] / us["floor"], 1),
            "c_engine_over_floor": round(us["c_engine"] / us["floor"], 1),
            "python_host_over_engine": round(us["python_host"] / us["engine"], 1),
            "evaluate_json_over_floor": round(us["evaluate_json"] / us["floor"], 1),
        },
        "targets": {
            "engine_over_floor_at_most_6": us["engine"] / us["floor"] <= 6,
            "evaluate_json_at_most_120_us": us["evaluate_json"] <= 120,
        },
        "cases_per_second_evaluate_json": round(1e6 / us["evaluate_json"]),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
    }, indent=2))
    print(f"engine {us['engine'] / us['floor']:.1f} x the floor (target 6: "
          f"{'yes' if us['engine'] / us['floor'] <= 6 else 'NO'}); whole path {us['evaluate_json']:.0f} µs "
          f"(target 120: {'yes' if us['evaluate_json'] <= 120 else 'NO'})", file=sys.stderr)


if __name__ == "__main__":
    main()
