"""Run compiled rulesets on durable-rules' C engine (``durable_rules_engine``), one case at a time.

durable-rules decides every node: each compiled rule that matches a case's facts is an action the
C engine queues, and what fired is read from those actions' names. Its Python host
(``durable.engine.Host``) is not used: per action it parses and re-serializes the whole session
state, builds closures and reads the clock, about nine tenths of its cost per case. The C
engine is driven directly, and its sharp edges are handled here:

- Everything crosses as JSON text. Its parser rejects numbers written as a digit and an exponent
  with no decimal point (``1e-05``, ``2e+16``, as Python writes some floats): facts are
  serialized here, every float in plain fixed-point notation.
- Facts are asserted, never posted as events: an event fires only its first matching rule.
- Sids are hashed to 32 bits with no string comparison, and a ruleset holds at most 1,024 live
  sids: each ruleset has ONE sid, reused for every case, holding one case at a time under a lock
  (nothing in the C engine releases the GIL, so the lock costs no parallelism). After a case its
  fact is retracted, which also removes its matches.
- An action that was started and never completed leases the sid for 30 s (later cases would
  silently fire nothing): on any failure mid-case the action is abandoned and the sid's state
  deleted, so the next case starts clean.
- ``delete_state`` on a sid that never stored a fact kills the process; the compiled sentinel rule
  matches every case, so the fact is always stored (and the sentinel firing shows the case ran).
- Every rule requires the discriminator ``kind: case`` (see service.policy.compiler): a rule made
  only of negations would otherwise match the engine's own state record.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import durable_rules_engine
import orjson

from service.policy.compiler import DISCRIMINATOR, SENTINEL, CompiledPolicy
from service.policy.fields import plain_decimal

SID = "1"
FACT_ID = "case"
_RESERVED = frozenset({*DISCRIMINATOR, "sid", "id"})  # keys the engine's bookkeeping puts in a fact
_CASE_FIELDS = ",".join(f'"{k}":"{v}"' for k, v in {**DISCRIMINATOR, "sid": SID, "id": FACT_ID}.items())
_RETRACTION = f'{{"sid":"{SID}","id":"{FACT_ID}"}}'


class EngineError(RuntimeError):
    """The rules engine failed on a case: a bug or a broken ruleset, never the client's input."""


_json_string = json.JSONEncoder(ensure_ascii=False).encode  # one encoder for every string, not one per call


def _fixed_point(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("facts hold finite numbers only")
    text = plain_decimal(value)
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
    if isinstance(value, list):  # a code list
        return "[" + ",".join([fact_json(v) for v in value]) + "]"
    raise TypeError(f"a fact cannot hold {type(value).__name__}")


def _fixed_point_anyway(value: Any) -> bool:
    """Whether orjson writes ``value`` as ``fact_json`` would: every float between 1e-4 and 1e15
    (or zero), where both write plain decimals with the same shortest round-trip digits."""
    if isinstance(value, float):
        return value == 0 or 1e-4 <= abs(value) < 1e15  # False for NaN and infinities too
    if isinstance(value, dict):
        return all([_fixed_point_anyway(v) for v in value.values()])
    if isinstance(value, list):
        return all([_fixed_point_anyway(v) for v in value])
    return True


def case_fact_json(facts: dict[str, Any]) -> str:
    """The fact for one case: its sections, the discriminator, the sid and the fixed fact id.
    Written by orjson (~5 times faster) unless a number needs ``fact_json``'s care."""
    if not facts:
        return f"{{{_CASE_FIELDS}}}"
    sections = None
    if _fixed_point_anyway(facts):
        try:
            sections = orjson.dumps(facts).decode()
        except orjson.JSONEncodeError:  # integers beyond 64 bits, lone surrogates
            pass
    if sections is None:
        sections = fact_json(facts)
    return f"{sections[:-1]},{_CASE_FIELDS}}}"


def fire_actions(handle: int, offset: int) -> set[str]:
    """Start and complete every action queued for a state; the names of their rules. (The name
    is read up to its closing quote: rule names are checked to need no JSON escaping.)"""
    fired: set[str] = set()
    started = durable_rules_engine.start_action_for_state(handle, offset)
    message = started[1] if started else None
    while message is not None:
        fired.add(message[2:message.index('"', 2)])
        message = durable_rules_engine.complete_and_start_action(handle, offset)
    return fired


class _Ruleset:
    def __init__(self, compiled: CompiledPolicy) -> None:
        for rule_name in compiled.ruleset:
            # An action's message is {"<rule name>": {"m": ...}}; the name is read up to its quote.
            if '"' in rule_name or "\\" in rule_name:
                raise EngineError(f"rule name {rule_name!r} of {compiled.name} needs JSON escaping")
        for path in compiled.fields:
            if path.partition(".")[0] in _RESERVED:
                raise EngineError(f"{compiled.name} reads {path}, whose section the engine reserves")
        self.rule_names = frozenset(compiled.ruleset)
        try:
            self.handle = durable_rules_engine.create_ruleset(compiled.name, json.dumps(compiled.ruleset))
        except durable_rules_engine.error as error:
            raise EngineError(f"durable-rules rejected {compiled.name}: {error}") from error


class RulesEngine:
    """Compiled rulesets registered once each; ``run`` gives the rules a case's facts fire."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rulesets: dict[str, _Ruleset] = {}

    def register(self, compiled: CompiledPolicy) -> None:
        with self._lock:
            if compiled.name not in self._rulesets:
                self._rulesets[compiled.name] = _Ruleset(compiled)

    def run(self, ruleset: str, facts: dict[str, Any]) -> set[str]:
        """Assert one case's facts; return the names of the rules that fired."""
        registered = self._rulesets.get(ruleset)
        if registered is None:
            raise EngineError(f"ruleset {ruleset} is not registered")
        text = case_fact_json(facts)
        with self._lock:
            return self._run(ruleset, registered, text)

    @staticmethod
    def _run(name: str, ruleset: _Ruleset, text: str) -> set[str]:
        handle = ruleset.handle
        engine = durable_rules_engine
        try:
            code, offset = engine.assert_fact(handle, text)
        except (engine.error, MemoryError) as error:
            raise EngineError(f"durable-rules failed on {name}: {type(error).__name__}") from error
        if code != 0:  # 2: the previous case's fact is still there; 1: not even the sentinel matched
            if code == 2:
                engine.delete_state(handle, SID)
            raise EngineError(f"durable-rules answered {code} to a case of {name}")
        try:
            fired = fire_actions(handle, offset)
            engine.retract_fact(handle, _RETRACTION)
        except BaseException as error:
            engine.abandon_action(handle, offset)
            engine.delete_state(handle, SID)  # the sentinel stored a fact: safe
            raise EngineError(f"durable-rules failed on {name}: {type(error).__name__}") from error
        if SENTINEL not in fired or not fired <= ruleset.rule_names:
            engine.delete_state(handle, SID)
            raise EngineError(f"{name} fired {sorted(fired - ruleset.rule_names) or 'no sentinel'}")
        return fired
