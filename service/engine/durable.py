"""The durable-rules host: register compiled rulesets once, run one case at a time.

durable-rules is unmaintained since 2020 and has sharp edges; each is handled here:

- One ``Host`` per process, never the ``durable.lang`` globals (their lazy host races under
  threads). ``_QuietHost`` also skips the host's background dispatch threads: we use no timers,
  and those threads would touch the engine outside our lock.
- A ruleset is registered once under its versioned name, from a copy (registration deletes the
  ``run`` keys of the dict it is given).
- Facts are asserted (``assert_fact``), never posted: an event fires only its first matching rule.
- One case = one fresh sid, deleted after reading what fired. Sids are hashed to 32 bits without
  a key check and a ruleset holds at most 1,024 live sids, so a lock keeps one sid live at a time.
- ``delete_state`` on a sid that never stored a fact kills the process: the compiled sentinel rule
  matches every case, and the sid is deleted only once the sentinel has fired.
- Exceptions raised in actions are swallowed into ``state['exception']``: checked after each run.
- Its JSON parser rejects numbers written as a digit and an exponent with no decimal point
  (``1e-05``, ``2e+16``, as Python writes some floats): facts are serialized here, every float
  in plain fixed-point notation, and handed to the engine as text.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from decimal import Decimal
from typing import Any, Callable

import durable_rules_engine
from durable.engine import Host

from service.policy.compiler import DISCRIMINATOR, SENTINEL, CompiledPolicy


class EngineError(RuntimeError):
    """The rules engine failed on a case: a bug or a broken ruleset, never the client's input."""


class _QuietHost(Host):
    def _run(self) -> None:  # no background dispatch threads (see module docstring)
        pass

    def assert_fact_text(self, ruleset_name: str, fact_text: str) -> dict[str, Any]:
        """``Host.assert_fact`` for a fact already serialized (see ``fact_json``); returns the state."""
        rules = self.get_ruleset(ruleset_name)

        def assert_text(text: str) -> Any:
            return rules._handle_result(durable_rules_engine.assert_fact(rules._handle, text), text)

        return self._handle_function(rules, assert_text, fact_text, None)


_json_string = json.JSONEncoder(ensure_ascii=False).encode  # one encoder for every string, not one per call


def _fixed_point(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("facts hold finite numbers only")
    text = repr(value)  # shortest round-trip digits; an exponent only below 1e-4 or from 1e16
    if "e" in text:
        text = format(Decimal(text), "f")
    return text if "." in text else f"{text}.0"


def fact_json(value: Any) -> str:
    """JSON for a fact (nested objects and lists of scalars) that durable-rules parses: floats fixed-point."""
    if isinstance(value, dict):
        return "{" + ",".join([f"{_json_string(str(k))}:{fact_json(v)}" for k, v in value.items()]) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join([fact_json(v) for v in value]) + "]"
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _fixed_point(value)
    if value is None:
        return "null"
    raise TypeError(f"a fact cannot hold {type(value).__name__}")


class RulesEngine:
    def __init__(self) -> None:
        self._host = _QuietHost()
        self._lock = threading.Lock()
        self._sids = itertools.count(1)
        self._registered: set[str] = set()
        self._fired: list[str] = []

    def register(self, compiled: CompiledPolicy) -> None:
        with self._lock:
            if compiled.name in self._registered:
                return
            definition = copy.deepcopy(compiled.ruleset)
            for rule_name, rule in definition.items():
                rule["run"] = self._recorder(rule_name)
            self._host.register_rulesets({compiled.name: definition})
            self._registered.add(compiled.name)

    def _recorder(self, rule_name: str) -> Callable[[Any], None]:
        def record(_closure: Any) -> None:
            self._fired.append(rule_name)

        return record

    def run(self, ruleset: str, facts: dict[str, Any]) -> set[str]:
        """Assert one case's facts under a fresh sid; return the names of the rules that fired."""
        if ruleset not in self._registered:
            raise EngineError(f"ruleset {ruleset} is not registered")
        with self._lock:
            sid = str(next(self._sids))
            self._fired = fired = []
            try:
                state = self._host.assert_fact_text(ruleset, fact_json({**facts, **DISCRIMINATOR, "sid": sid}))
            except Exception as error:
                raise EngineError(f"durable-rules failed on {ruleset}: {type(error).__name__}") from error
            finally:
                if SENTINEL in fired:
                    self._host.delete_state(ruleset, sid)
            if SENTINEL not in fired:
                raise EngineError(f"the sentinel rule of {ruleset} did not fire; sid {sid} left live")
            if state and state.get("exception"):
                raise EngineError(f"a rule action of {ruleset} raised: {state['exception']}")
            return set(fired)
