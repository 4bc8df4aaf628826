"""Turn what durable-rules decided into the result a reviewer reads (shared/contract.md), as JSON.

The engine has already decided the truth of every node of every rule; this module only reads
those truths back: it names the comparisons that settle each answer (the reason), the values read
(the evidence), and the missing fields the answer still depends on. It never compares values.

The result is written as JSON directly, from pieces worked out ahead of time:

- what does not depend on the case (titles, citations, each comparison's requirement in words) is
  written once per policy version, when its ``ResultBuilder`` is made;
- what depends on the case only through which of a rule's nodes are true, false or unknown and
  which of its fields are documented (its status, which comparisons settle it, its missing
  fields, its whole finding as JSON but for the values' words and evidence items) is a *plan*,
  worked out once per such pattern and kept (up to ``PLANS_PER_RULE``); a pattern is a bit mask,
  so finding a rule's plan costs one ``&`` and one lookup;
- a documented value's words and evidence item are written once per case (and kept per field
  for values seen before, up to ``VALUES_PER_FIELD``), then slotted into every plan that shows it.

The bytes are those of ``service.json_output.json_bytes`` on the result as a dict (the reference
test compares them over 20,000 varied cases): JSON escaping works character by character, so
escaped pieces joined are the joined text escaped. A value orjson cannot write (an integer beyond
64 bits) sends the whole result through Python's ``json``, as ``json_bytes`` does.
"""

from __future__ import annotations

import json
from operator import itemgetter
from typing import Any, Callable, Iterator, NamedTuple

import orjson

from service.json_output import json_bytes
from service.policy.fields import Dictionary, FieldSpec
from service.policy.logic import OPERATORS, AnyOf, Comparison, Expr, Not, walk
from service.policy.rules import PolicyVersion, Rule

NOTICE = "These findings support a reviewer's determination; they are not a coverage decision."
CRITERION_STATUS = {True: "met", False: "not_met", None: "insufficient_information"}
FLAG_STATUS = {True: "present", False: "absent", None: "unknown"}
_PREFIX = {True: "Met", False: "Not met", None: "Insufficient information"}
_FLAG_PREFIX = {True: "Present", False: "Absent", None: "Unknown"}
_EITHER = {"required": "is required", "present when": "makes it present"}
PLANS_PER_RULE = 4096  # bounds the memory of the patterns kept per rule (a rule has few in practice)
VALUES_PER_FIELD = 1024  # bounds the values whose words and evidence are kept per field
_EXACT = 2**53  # numbers a float holds exactly: equal ones (7, 7.0, -0.0 and 0) are written alike

Dumps = Callable[[Any], bytes]
_dumps: Dumps = orjson.dumps


def _python_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Built(NamedTuple):
    """A result as JSON, and its ``summary.outcome``; ``exact`` when written by Python's ``json``
    (it holds an integer beyond 64 bits, which orjson would read back as a float)."""

    json: bytes
    outcome: str
    exact: bool = False

    def result(self) -> dict[str, Any]:
        """The result as a dict (a new one each time: results share no mutable part)."""
        return (json.loads if self.exact else orjson.loads)(self.json)


def _plain(value: Any) -> Any:
    """7.0 -> 7, so evidence shows numbers as intake systems usually send them (exact ints only)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT:
        return int(value)
    return value


def _comparisons(expr: Expr, node_id: str, negated: bool = False) -> Iterator[tuple[str, Comparison, bool]]:
    """Every comparison of a rule's logic with its node id and whether it sits under a ``not``."""
    if isinstance(expr, Comparison):
        yield node_id, expr, negated
    elif isinstance(expr, Not):
        yield from _comparisons(expr.part, f"{node_id}.0", not negated)
    else:
        for index, part in enumerate(expr.parts):
            yield from _comparisons(part, f"{node_id}.{index}", negated)


def _settling(expr: Expr, node_id: str, truths: dict[str, bool]) -> Iterator[tuple[str, Comparison]]:
    """The comparisons that settle a node's truth value, each with its node id.

    A known node is settled by its parts of the same truth value (for a true ``all`` or a false
    ``any``, that is every part). An unknown node waits on its unknown parts; an unknown ``any``
    also lists its false parts, since they are why the answer still waits on the missing ones.
    """
    if isinstance(expr, Comparison):
        yield node_id, expr
        return
    if isinstance(expr, Not):
        yield from _settling(expr.part, f"{node_id}.0", truths)
        return
    truth = truths.get(node_id)
    for index, part in enumerate(expr.parts):
        part_id = f"{node_id}.{index}"
        part_truth = truths.get(part_id)
        keep = part_truth == truth or (truth is None and part_truth is False and isinstance(expr, AnyOf))
        if keep:
            yield from _settling(part, part_id, truths)


def _alternatives(expr: Expr, node_id: str) -> Iterator[tuple[str, Expr]]:
    """The ``any`` nodes of a rule's logic with their ids (outside any ``not``: a negated ``any``
    is an ``all`` and reads as one)."""
    if isinstance(expr, AnyOf):
        yield node_id, expr
    if not isinstance(expr, Not):
        for index, part in enumerate(getattr(expr, "parts", ())):
            yield from _alternatives(part, f"{node_id}.{index}")


def _value(spec: FieldSpec, read: bool, evidence_head: bytes, value: Any, dumps: Dumps) -> tuple[bytes, bytes]:
    """A value's words (escaped for a JSON string, as reasons show them) and evidence item."""
    words = dumps(spec.words(value) or "none")[1:-1] if read else b""
    return words, evidence_head + dumps(_plain(value)) + b"}"


class _Field(NamedTuple):
    """A dictionary field as results show it: its bit in a pattern, the numbers of its two slots
    in a case's pieces (its value's words, its evidence item), and its values seen before."""

    bit: int
    words: int
    evidence: int
    seen: dict[Any, tuple[bytes, bytes]]
    spec: FieldSpec
    read: bool  # by some rule (else its evidence goes under other_evidence, with its label)
    evidence_head: bytes


class _Plan(NamedTuple):
    status: str
    missing: tuple[str, ...]
    template: bytes  # the finding up to its citations, ``%b`` where the case's pieces go
    pieces: Callable[[list], Any] | None  # the case's pieces, from its slots (an itemgetter)
    citations: bytes  # and the end of the finding


class _FindingWriter:
    """Writes one rule's finding (a criterion's or a flag's) from its pattern and the case's slots."""

    def __init__(self, rule: Rule, dictionary: Dictionary, fields: dict[str, _Field],
                 bits: tuple[dict[str, int], dict[str, int]], statuses: dict, prefixes: dict, needs: str):
        self.rule = rule
        self.id = rule.id
        self.statuses = statuses
        self.prefixes = prefixes
        self.fields = fields
        self.specs: dict[str, FieldSpec] = {path: dictionary[path] for path in rule.fields}
        # node id -> what the comparison needs in words ("required: at least 6"), and the same as
        # one alternative of an ``any`` ("Back pain NRS at least 6")
        self.needs: dict[str, str] = {}
        alternative: dict[str, str] = {}
        for node_id, node, negated in _comparisons(rule.logic, rule.id):
            spec = self.specs[node.field]
            operator = OPERATORS[node.operator][1] if negated else node.operator
            value = spec.words(node.value)
            required = value if operator == "equals" else f"{OPERATORS[operator][0]} {value}"
            if operator in ("includes_any", "includes_none"):
                required += ", or a code starting with one of them"
            self.needs[node_id] = f"{needs}: {required}"
            alternative[node_id] = f"{spec.label} {required}"
        # an ``any`` whose parts are plain comparisons reads as "either A or B is required"
        self.either: dict[str, str] = {}
        for node_id, node in _alternatives(rule.logic, rule.id):
            parts = [f"{node_id}.{i}" for i in range(len(node.parts))]
            if all(part in alternative for part in parts):
                self.either[node_id] = f"either {' or '.join(alternative[part] for part in parts)} {_EITHER[needs]}"

        # the rule's pattern: the bits of its nodes' truths and of its fields
        self.mask = 0
        for node_id, _ in walk(rule.logic, rule.id):
            self.mask |= bits[0][node_id] | bits[1][node_id]
        for path in rule.fields:
            self.mask |= fields[path].bit
        head = (b'{"id":' + _dumps(rule.id) + b',"title":' + _dumps(rule.title)
                + b',"requirement":' + _dumps(rule.requirement) + b',"status":')
        self._head = {truth: head + _dumps(status) + b',"reason":"' for truth, status in statuses.items()}
        self._tail = b',"citations":' + _dumps([c.to_dict() for c in rule.citations]) + b"}"
        self._plans: dict[int, _Plan] = {}

    def plan(self, pattern: int, truths: dict[str, bool], values: dict[str, Any]) -> _Plan:
        """The plan for the case whose pattern (every rule's bits) is ``pattern``."""
        key = pattern & self.mask
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(truths, {path for path in self.rule.fields if path in values})
            if len(self._plans) < PLANS_PER_RULE:
                self._plans[key] = plan
        return plan

    def _sentence(self, node_id: str, node: Comparison, present: set[str], plain: bool) -> list:
        spec = self.specs[node.field]
        if node.field not in present:
            found = f"{spec.label} is not documented ({node.field}"
            return [f"{found})" if plain else f"{found}; {self.needs[node_id]})"]
        found = [f"{spec.label} {'are' if spec.kind == 'code_list' else 'is'} ", self.fields[node.field].words]
        return found if plain else [*found, f" ({self.needs[node_id]})"]

    def _plan(self, truths: dict[str, bool], present: set[str]) -> _Plan:
        """The finding but for the values' words and evidence items: for one pattern of node
        truths and documented fields (a field is documented or not, whatever its value)."""
        rule = self.rule
        truth = truths.get(rule.id)
        sentences, missing = [], []
        settling = list(_settling(rule.logic, rule.id, truths))
        # An ``any`` that is not met, or still waits, states its alternatives once, then what was found.
        groups = {node_id: [] for node_id in self.either if truths.get(node_id) is not True}
        for node_id, node in settling:
            if node.field not in present:
                missing.append(node.field)
            group = node_id.rpartition(".")[0]
            if group in groups:
                groups[group].append(self._sentence(node_id, node, present, plain=True))
                if len(groups[group]) == 1:
                    sentences.append(group)  # placeholder, filled below
            else:
                sentences.append(self._sentence(node_id, node, present, plain=False))
        reason: list = [f"{self.prefixes[truth]}: "]
        for index, sentence in enumerate(sentences):
            if index:
                reason.append("; ")
            if isinstance(sentence, str):  # an ``any``'s group
                reason.append(f"{self.either[sentence]}: ")
                for number, alternative in enumerate(groups[sentence]):
                    reason.extend([", ", *alternative] if number else alternative)
            else:
                reason.extend(sentence)
        reason.append(".")
        missing = list(dict.fromkeys(missing)) if truth is None else []
        pieces: list = [self._head[truth]]
        pieces += [_dumps(part)[1:-1] if isinstance(part, str) else part for part in reason]  # words: a slot
        pieces.append(b'","evidence":[')
        for number, path in enumerate(path for path in rule.fields if path in present):
            pieces += [b",", self.fields[path].evidence] if number else [self.fields[path].evidence]
        pieces.append(b'],"missing":' + _dumps(missing))
        slots = [piece for piece in pieces if piece.__class__ is int]
        if not slots:
            return _Plan(self.statuses[truth], tuple(missing), b"".join(pieces), None, self._tail)
        template = b"".join([piece.replace(b"%", b"%%") if piece.__class__ is bytes else b"%b" for piece in pieces])
        return _Plan(self.statuses[truth], tuple(missing), template, itemgetter(*slots), self._tail)


def _outcome(counts: list[int]) -> bytes:
    """From the numbers of criteria met, not met and waiting on information."""
    if counts[1]:
        return b"criteria_not_met"
    if counts[2]:
        return b"information_missing"
    return b"all_criteria_met"


class ResultBuilder:
    """Builds the results of one policy version."""

    def __init__(self, policy: PolicyVersion, dictionary: Dictionary):
        self.policy = policy
        rules = (*policy.criteria, *policy.flags)
        read = {path for rule in rules for path in rule.fields}
        self._fields: dict[str, _Field] = {}
        for index, (path, spec) in enumerate(dictionary.fields.items()):
            # Documented values no criterion or flag reads are shown too (with their label), so
            # nothing a submitter sent is hidden.
            label = b"" if path in read else b',"label":' + _dumps(spec.label)
            self._fields[path] = _Field(1 << index, 2 * index, 2 * index + 1, {}, spec, path in read,
                                        b'{"field":' + _dumps(path) + label + b',"value":')
        self._slots = 2 * len(self._fields)
        self._unread = tuple(field.evidence for path, field in self._fields.items() if not field.read)
        self._true_bits: dict[str, int] = {}  # node id -> its bit when true
        self._false_bits: dict[str, int] = {}  # and when false (an unknown node has neither)
        bit = 1 << len(self._fields)
        for rule in rules:
            for node_id, _ in walk(rule.logic, rule.id):
                self._true_bits[node_id], self._false_bits[node_id] = bit, bit << 1
                bit <<= 2
        bits = (self._true_bits, self._false_bits)
        self._criteria = [_FindingWriter(r, dictionary, self._fields, bits, CRITERION_STATUS, _PREFIX, "required")
                          for r in policy.criteria]
        self._flags = [_FindingWriter(r, dictionary, self._fields, bits, FLAG_STATUS, _FLAG_PREFIX, "present when")
                       for r in policy.flags]
        self._writers = (*self._criteria, *self._flags)
        self._policy = b',"policy":' + _dumps(policy.header()) + b',"summary":{"outcome":"'
        self._notice = b'],"notice":' + _dumps(NOTICE) + b'},"criteria":['

    def build(self, external_id: str, values: dict[str, Any], truths: dict[str, bool], **details: Any) -> dict[str, Any]:
        """The result as a dict (see :meth:`build_json`)."""
        return self.build_json(external_id, values, truths, **details).result()

    def build_json(self, external_id: str, values: dict[str, Any], truths: dict[str, bool], *,
                   evaluation_id: str, evaluated_at: str, service_date: str,
                   provenance: dict[str, dict[str, str]] | None = None) -> Built:
        """The result as JSON, for a case's documented ``values`` (by field path, every
        documented field of the dictionary), its node ``truths``, and where FHIR values came
        from (``provenance``)."""
        head = (evaluation_id, external_id, evaluated_at, service_date)
        try:
            return Built(*self._write(head, values, truths, provenance or {}, _dumps))
        except orjson.JSONEncodeError:
            text, outcome = self._write(head, values, truths, provenance or {}, _python_dumps)
            return Built(json_bytes(json.loads(text)), outcome, exact=True)

    def _write(self, head: tuple[str, str, str, str], values: dict[str, Any], truths: dict[str, bool],
               provenance: dict[str, dict[str, str]], dumps: Dumps) -> tuple[bytes, str]:
        slots: list = [b""] * self._slots
        pattern = 0
        fields = self._fields
        for path, value in values.items():
            bit, words, evidence, seen, spec, read, evidence_head = fields[path]
            pattern |= bit
            kind = value.__class__
            if kind is str or kind is bool or ((kind is int or kind is float) and -_EXACT <= value <= _EXACT):
                written = seen.get(value)
                if written is None:
                    written = _value(spec, read, evidence_head, value, dumps)
                    if dumps is _dumps and len(seen) < VALUES_PER_FIELD:
                        seen[value] = written
            else:
                written = _value(spec, read, evidence_head, value, dumps)
            slots[words] = written[0]
            if provenance and path in provenance:
                slots[evidence] = written[1][:-1] + b',"source":' + dumps(dict(provenance[path])) + b"}"
            else:
                slots[evidence] = written[1]
        true_bits, false_bits = self._true_bits, self._false_bits
        for node_id, truth in truths.items():
            pattern |= true_bits[node_id] if truth else false_bits[node_id]
        try:  # every rule's plan seen before: one lookup each
            plans = [writer._plans[pattern & writer.mask] for writer in self._writers]
        except KeyError:
            plans = [writer.plan(pattern, truths, values) for writer in self._writers]
        criteria, flags = plans[:len(self._criteria)], plans[len(self._criteria):]
        statuses = [plan.status for plan in criteria]
        counts = [statuses.count(status) for status in CRITERION_STATUS.values()]
        present = [writer.id for writer, plan in zip(self._flags, flags) if plan.status == "present"]
        missing = list(dict.fromkeys([path for plan in criteria if plan.missing for path in plan.missing]))
        evaluation_id, external_id, evaluated_at, service_date = head
        outcome = _outcome(counts)
        out = [b'{"evaluation_id":', dumps(evaluation_id), b',"external_id":', dumps(external_id),
               b',"evaluated_at":', dumps(evaluated_at), b',"service_date":', dumps(service_date), self._policy,
               b'%s","met":%d,"not_met":%d,"insufficient_information":%d,"total":%d,"flags_present":['
               % (outcome, *counts, len(criteria)),
               b",".join([dumps(rule_id) for rule_id in present]), self._notice]
        append = out.append
        for plans, closing in ((criteria, b'],"flags":['), (flags, b'],"other_evidence":[')):
            for plan in plans:
                append(plan.template % plan.pieces(slots) if plan.pieces else plan.template)
                append(plan.citations)
                append(b",")
            if plans:
                out[-1] = closing
            else:
                append(closing)
        append(b",".join([slots[slot] for slot in self._unread if slots[slot]]))
        append(b'],"missing_information":' + dumps(missing) + b"}")
        return b"".join(out), outcome.decode()

