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
import re
import threading
from typing import Any

import durable_rules_engine
import orjson

from service.policy.compiler import DISCRIMINATOR, CompiledPolicy
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


# Where orjson's text may differ from ``fact_json``'s: a number with an exponent (orjson writes
# 1e-7 and 2e+16 so; any float it writes without one has the same digits as ``fact_json``,
# checked over the whole range of doubles) and ``null``, which is how orjson writes NaN and
# infinities (``fact_json`` refuses them). A string holding "e-", "e+" or "e" and a digit costs
# the slow path, no more. (A pattern starting with a letter is searched for that letter first:
# ~0.3 µs a fact here; "[0-9]e|null" took ~3 µs, walking the facts for such floats ~2.5 µs.)
_EXPONENT = re.compile(rb"e[-+0-9]").search
_CASE_TAIL = f",{_CASE_FIELDS}}}".encode()


def case_fact_json(facts: dict[str, Any]) -> str:
    """The fact for one case: its sections, the discriminator, the sid and the fixed fact id.
    Written by orjson (~10 times faster) unless a number needs ``fact_json``'s care."""
    if not facts:
        return f"{{{_CASE_FIELDS}}}"
    try:
        text = orjson.dumps(facts)
    except orjson.JSONEncodeError:  # integers beyond 64 bits, lone surrogates
        text = None
    if text is None or _EXPONENT(text) or b"null" in text:
        return f"{fact_json(facts)[:-1]},{_CASE_FIELDS}}}"
    return (text[:-1] + _CASE_TAIL).decode()


def fire_actions(handle: int, offset: int, width: int) -> set[str]:
    """Start and complete every action queued for a state; the names of their rules. An action's
    message is ``{"<rule name>":{"m":…}}``, and every rule name has ``width`` characters that
    need no JSON escaping (checked at registration), so a name is read at a fixed place."""
    fired: set[str] = set()
    add, end = fired.add, 2 + width
    started = durable_rules_engine.start_action_for_state(handle, offset)
    message = started[1] if started else None
    complete_and_start = durable_rules_engine.complete_and_start_action
    while message is not None:
        add(message[2:end])
        message = complete_and_start(handle, offset)
    return fired


class _Ruleset:
    def __init__(self, compiled: CompiledPolicy) -> None:
        self.width = len(compiled.sentinel)
        for rule_name in compiled.ruleset:
            # An action's message is {"<rule name>":{"m":...}}; the name is read at a fixed place.
            if len(rule_name) != self.width or not rule_name.isascii() or not rule_name.isalnum():
                raise EngineError(f"rule name {rule_name!r} of {compiled.name} is not {self.width} letters or digits")
        for path, key in compiled.keys.items():
            if key.partition(".")[0] in _RESERVED:
                raise EngineError(f"{compiled.name} names {path} {key}, which the engine reserves")
        self.sentinel = compiled.sentinel
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
            fired = fire_actions(handle, offset, ruleset.width)
            engine.retract_fact(handle, _RETRACTION)
        except BaseException as error:
            engine.abandon_action(handle, offset)
            engine.delete_state(handle, SID)  # the sentinel stored a fact: safe
            raise EngineError(f"durable-rules failed on {name}: {type(error).__name__}") from error
        if ruleset.sentinel not in fired or not fired <= ruleset.rule_names:
            engine.delete_state(handle, SID)
            raise EngineError(f"{name} fired {sorted(fired - ruleset.rule_names) or 'no sentinel'}")
        return fired
