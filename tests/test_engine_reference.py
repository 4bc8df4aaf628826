"""The C path (service.engine.durable, durable-rules' C extension driven directly) against the
reference: durable-rules' own Python host as the service used it before (tests/reference_host.py).
Both get the same compiled rulesets; thousands of varied cases must fire exactly the same rules,
one by one and from several threads, and give the same results end to end."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from reference_host import ReferenceEngine
from service.engine.durable import RulesEngine
from service.engine.evaluation import Evaluator
from service.errors import InvalidInput
from service.policy.compiler import compile_policy
from service.policy.logic import Comparison, walk
from service.policy.rules import load_catalog

CASES_PER_VERSION = 3000


def candidate_values(version) -> dict[str, list]:
    """For every field the version reads: values on, either side of and away from each threshold
    (ints and floats, tiny and huge numbers), each listed value, and values no rule names."""
    values: dict[str, list] = {}
    for rule in (*version.criteria, *version.flags):
        for _, node in walk(rule.logic, rule.id):
            if not isinstance(node, Comparison):
                continue
            found = values.setdefault(node.field, [])
            for operand in node.value if isinstance(node.value, list) else [node.value]:
                if isinstance(operand, bool):
                    found += [True, False]
                elif isinstance(operand, (int, float)):
                    found += [operand, operand - 1, operand + 1, operand - 0.5, operand + 0.25, float(operand),
                              0, 1e-05, 2e16, -3]
                else:
                    found += [operand, f"{operand}_not"]
    return {field: list(dict.fromkeys(found)) for field, found in values.items()}


def engine_facts(compiled, nested: dict) -> dict:
    """Facts nested by section as in a case, under the names the compiled ruleset gives them."""
    facts: dict = {}
    for section, members in nested.items():
        for name, value in members.items():
            short_section, _, short_name = compiled.keys[f"{section}.{name}"].rpartition(".")
            facts.setdefault(short_section, {})[short_name] = value
    return facts


def varied_facts(version, count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    candidates = candidate_values(version)
    cases = [{}]
    for _ in range(count - 1):
        keep = rng.choice([0.3, 0.7, 0.95])
        facts: dict = {}
        for path, options in candidates.items():
            if rng.random() < keep:
                section, name = path.split(".")
                facts.setdefault(section, {})[name] = rng.choice(options)
        cases.append(facts)
    return cases


VERSIONS = list(load_catalog().all_versions())


@pytest.fixture(scope="module")
def engines():
    reference, engine = ReferenceEngine(), RulesEngine()
    for version in VERSIONS:
        compiled = compile_policy(version)
        reference.register(compiled)
        engine.register(compiled)
    return reference, engine


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.key)
def test_the_c_path_fires_exactly_the_rules_the_python_host_fires(engines, version):
    reference, engine = engines
    compiled = compile_policy(version)
    name = compiled.name
    cases = [engine_facts(compiled, facts) for facts in varied_facts(version, CASES_PER_VERSION, seed=len(name))]
    expected = [reference.run(name, facts) for facts in cases]
    assert [engine.run(name, facts) for facts in cases] == expected
    assert len({frozenset(fired) for fired in expected}) > CASES_PER_VERSION // 10  # the cases do vary
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(lambda facts: engine.run(name, facts), cases)) == expected


def valid_part(evaluator: Evaluator, payload: dict) -> dict:
    """The payload without the values the case model refuses (a float for an integer field, a
    word that is not one of a field's choices)."""
    while True:
        try:
            evaluator.parse(payload)
            return payload
        except InvalidInput as error:
            for problem in error.errors:
                section, _, name = problem["field"].partition(".")
                payload[section].pop(name.partition(".")[0], None)


def test_whole_results_are_the_same_on_either_path(engines):
    catalog = load_catalog()
    reference = Evaluator(catalog, engine=ReferenceEngine())
    c_path = Evaluator(catalog)
    payloads = []
    for version in VERSIONS:
        for index, facts in enumerate(varied_facts(version, 1500, seed=7)):
            payload = {"external_id": f"{version.key}-{index}", "policy": version.id,
                       "service_date": version.effective_from.isoformat(), **facts}
            payloads.append(valid_part(c_path, payload))
    assert len(payloads) > 1000

    def findings(evaluator: Evaluator, payload: dict) -> dict:
        result = evaluator.evaluate(payload)
        return {k: v for k, v in result.items() if k not in ("evaluation_id", "evaluated_at")}

    expected = [findings(reference, p) for p in payloads]
    seen = {(c["id"], c["status"]) for r in expected for c in r["criteria"]}  # the cases do vary
    assert {status for _, status in seen} == {"met", "not_met", "insufficient_information"}
    assert len(seen) > 2 * sum(len(v.criteria) for v in VERSIONS)
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(lambda p: findings(c_path, p), payloads)) == expected
