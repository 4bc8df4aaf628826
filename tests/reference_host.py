"""The engine as it was before it drove durable-rules' C extension directly: durable-rules' own
Python ``Host``, one fresh sid per case, deleted afterwards. Kept only here, as the reference
that tests/test_engine_reference.py checks the C path against; the service never imports it."""

from __future__ import annotations

import copy
import itertools
import threading
from typing import Any, Callable

import durable_rules_engine
from durable.engine import Host

from service.engine.durable import EngineError, fact_json
from service.policy.compiler import DISCRIMINATOR, CompiledPolicy


class _QuietHost(Host):
    def _run(self) -> None:  # no background dispatch threads: they would touch the engine outside our lock
        pass

    def assert_fact_text(self, ruleset_name: str, fact_text: str) -> dict[str, Any]:
        """``Host.assert_fact`` for a fact already serialized (see ``fact_json``); returns the state."""
        rules = self.get_ruleset(ruleset_name)

        def assert_text(text: str) -> Any:
            return rules._handle_result(durable_rules_engine.assert_fact(rules._handle, text), text)

        return self._handle_function(rules, assert_text, fact_text, None)


class ReferenceEngine:
    """Same interface as ``service.engine.durable.RulesEngine``: ``register``, ``run``."""

    def __init__(self) -> None:
        self._host = _QuietHost()
        self._lock = threading.Lock()
        self._sids = itertools.count(1)
        self._registered: dict[str, str] = {}  # ruleset -> its sentinel rule
        self._fired: list[str] = []

    def register(self, compiled: CompiledPolicy) -> None:
        with self._lock:
            if compiled.name in self._registered:
                return
            definition = copy.deepcopy(compiled.ruleset)  # registration deletes the "run" keys
            for rule_name, rule in definition.items():
                rule["run"] = self._recorder(rule_name)
            self._host.register_rulesets({compiled.name: definition})
            self._registered[compiled.name] = compiled.sentinel

    def _recorder(self, rule_name: str) -> Callable[[Any], None]:
        def record(_closure: Any) -> None:
            self._fired.append(rule_name)

        return record

    def run(self, ruleset: str, facts: dict[str, Any]) -> set[str]:
        if ruleset not in self._registered:
            raise EngineError(f"ruleset {ruleset} is not registered")
        sentinel = self._registered[ruleset]
        with self._lock:
            sid = str(next(self._sids))
            self._fired = fired = []
            try:
                state = self._host.assert_fact_text(ruleset, fact_json({**facts, **DISCRIMINATOR, "sid": sid}))
            finally:
                if sentinel in fired:
                    self._host.delete_state(ruleset, sid)
            if sentinel not in fired:
                raise EngineError(f"the sentinel rule of {ruleset} did not fire; sid {sid} left live")
            if state and state.get("exception"):
                raise EngineError(f"a rule action of {ruleset} raised: {state['exception']}")
            return set(fired)
