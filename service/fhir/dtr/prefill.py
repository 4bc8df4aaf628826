"""Pre-population logic generated from the ``fhir:`` declarations of ``rules/fields.yaml``.

For every field a questionnaire asks, one ``define`` named by the field's path gives the value the
project's own FHIR intake (``service.fhir.intake``) would read from the same chart: each declared
source (and any earlier QuestionnaireResponse answering the field's linkId) gives candidates
``Tuple { value, day, instant }``; the usable ones are dated on or before the service date (or
undated); the latest wins (undated ones below dated ones, the later resource on a tie); a code
list gathers the codes of every usable candidate, oldest first. The rules are the intake's rules
(docs/fhir.md), written once more here in CQL's terms; tests run both on the same Bundles.
"""

from __future__ import annotations

from typing import Any

from service.fhir.dtr.common import AS_OF, UCUM, YES_NO, first_date, in_list, not_null
from service.fhir.dtr.expr import (
    NULL,
    Alias,
    As,
    Call,
    Case,
    CodeLit,
    Define,
    If,
    Is,
    ListOf,
    Lit,
    Node,
    Op,
    Query,
    Ref,
    Retrieve,
    TupleOf,
    ValueSetDef,
    ValueSetRef,
    all_of,
    any_of,
    eq,
    get,
    op,
)
from service.policy.sources import (
    Code,
    ConditionSource,
    ObservationSource,
    PatientSource,
    ProcedureSource,
    ScoredQuestionnaireSource,
    Source,
)

WHEN = Alias("When", let=True)  # a query's date, as its let clause names it


def _when(date: Node, value: Node) -> TupleOf:
    return TupleOf((("value", value), ("dated", Call("Day", (date,))), ("instant", Call("Instant", (date,))),
                    ("attested", Lit(False))))


# --- one field ----------------------------------------------------------------------------------

class FieldLogic:
    """The defines of one field: ``<path> candidates``, ``<path> usable``, ``<path> latest`` and
    ``<path>`` (the value), and the value sets its retrieves use."""

    def __init__(self, spec: Any, sources: tuple[Source, ...], value_set: Any) -> None:
        self.spec, self.sources = spec, sources
        self.value_set = value_set  # (path, index, codes) -> ValueSetDef, registered by the caller
        self.value_sets: list[ValueSetDef] = []

    def defines(self) -> list[Define]:
        path = self.spec.path
        candidates = [self._source(i, s) for i, s in enumerate(self.sources)] + [self._answers()]
        c, u = Alias("C"), Alias("U")
        usable = Query("C", Ref(f"{path} candidates"), where=all_of(
            not_null(get(c, "value")), any_of(op("IsNull", get(c, "dated")), op("LessOrEqual", get(c, "dated"), AS_OF),
                                              eq(get(c, "attested"), Lit(True)))))
        out = [Define(f"{path} candidates", op("Flatten", ListOf(tuple(candidates)))),
               Define(f"{path} usable", usable)]
        if self.spec.kind == "code_list":
            d = Alias("D")
            rank = If(op("IsNull", get(c, "instant")), Lit(0), op("Add", Lit(1), op("Count", Query(
                "D", Ref(f"{path} usable"), where=op("Less", get(d, "instant"), get(c, "instant"))))))
            ranked = Query("C", Ref(f"{path} usable"), ret=TupleOf((("codes", get(c, "value")), ("rank", rank))),
                           sort_by="rank")
            s = Alias("S")
            out.append(Define(f"{path} codes", op("Distinct", op("Flatten", Query("S", ranked, ret=get(s, "codes"))))))
            codes = Ref(f"{path} codes")
            out.append(Define(path, If(op("Exists", codes), codes, NULL),
                              f"{self.spec.label}: the codes of every usable resource, oldest first (none: null)."))
            return out
        latest = op("Max", Query("U", Ref(f"{path} usable"), ret=get(u, "instant")))
        out.append(Define(f"{path} latest", latest))
        chosen = op("Last", Query("C", Ref(f"{path} usable"), where=any_of(
            op("IsNull", Ref(f"{path} latest")), eq(get(c, "instant"), Ref(f"{path} latest")))))
        out.append(Define(path, get(chosen, "value"), f"{self.spec.label}: the latest usable value."))
        if self.spec.kind == "boolean":  # the form asks yes/no as a choice of Y / N
            out.append(Define(f"{path} answer", If(op("IsNull", Ref(path)), NULL, If(
                Ref(path), CodeLit(YES_NO, "Y", "Yes"), CodeLit(YES_NO, "N", "No"))),
                f"{self.spec.label}, as the form's Yes / No answer."))
        return out

    # -- declared sources --

    def _source(self, index: int, source: Source) -> Node:
        if isinstance(source, ObservationSource):
            return self._observation(index, source)
        if isinstance(source, ConditionSource):
            return self._condition(source)
        if isinstance(source, ProcedureSource):
            return self._procedure(index, source)
        if isinstance(source, PatientSource):
            return self._patient()
        if isinstance(source, ScoredQuestionnaireSource):
            return self._scored(source)
        raise TypeError(f"no CQL for {type(source).__name__}")

    def _value_set(self, index: int, codes: tuple[Code, ...]) -> ValueSetRef:
        definition = self.value_set(self.spec.path, index, codes)
        self.value_sets.append(definition)
        return ValueSetRef(definition.name)

    def _observation(self, index: int, source: ObservationSource) -> Node:
        o, q, unit = Alias("O"), Alias("Q", let=True), Alias("Unit", let=True)
        value = get(o, "value")
        quantity_value: Node = NULL
        if "quantity" in source.value_forms:
            quantity_value = If(any_of(op("IsNull", get(q, "value")), not_null(get(q, "comparator"))), NULL,
                                _in_units(get(q, "value.value"), unit, source.units))
        read: Node = quantity_value
        if "integer" in source.value_forms:
            read = If(Is(value, "integer"), get(As(value, "integer"), "value"), quantity_value)
        date = first_date(get(As(get(o, "effective"), "dateTime"), "value"),
                           get(As(get(o, "effective"), "Period"), "end.value"),
                           get(As(get(o, "effective"), "Period"), "start.value"),
                           get(As(get(o, "effective"), "instant"), "value"), get(o, "issued.value"))
        return Query("O", Retrieve("Observation", self._value_set(index, source.codes)),
                     lets=(("Q", As(value, "Quantity")), ("Unit", _unit_name(q)), ("When", date)),
                     where=in_list(get(o, "status.value"), ("final", "amended", "corrected")),
                     ret=_when(WHEN, read))

    def _condition(self, source: ConditionSource) -> Node:
        c, x = Alias("C"), Alias("X")
        matching = any_of(*(all_of(eq(get(x, "system.value"), Lit(code.system)),
                                   op("StartsWith", get(x, "code.value"), Lit(code.code)))
                            if code.code is not None else eq(get(x, "system.value"), Lit(code.system))
                            for code in source.codes))
        refuted = op("Exists", Query("X", get(c, "verificationStatus.coding"),
                                     where=in_list(get(x, "code.value"), ("refuted", "entered-in-error"))))
        onset = op("Coalesce", get(As(get(c, "onset"), "dateTime"), "value"),
                   get(As(get(c, "onset"), "Period"), "start.value"))
        date = first_date(get(c, "recordedDate.value"), onset)
        if source.read == "present":
            value: Node = Lit(True)
        elif source.read == "codes":
            codes = Query("X", get(c, "code.coding"), where=matching, ret=get(x, "code.value"))
            value = If(op("Exists", codes), codes, NULL)
        else:  # onset_months: completed months from the onset's last day to the service date
            start = Call("Last Day", (onset,))
            value = If(any_of(op("IsNull", start), op("Less", AS_OF, start)), NULL, _completed_months(start, AS_OF))
        return Query("C", Retrieve("Condition"), lets=(("When", date),),
                     where=all_of(op("Exists", Query("X", get(c, "code.coding"), where=matching)), op("Not", refuted)),
                     ret=_when(WHEN, value))

    def _procedure(self, index: int, source: ProcedureSource) -> Node:
        p, x = Alias("P"), Alias("X")
        date = first_date(get(As(get(p, "performed"), "dateTime"), "value"),
                           get(As(get(p, "performed"), "Period"), "end.value"),
                           get(As(get(p, "performed"), "Period"), "start.value"))
        if source.read == "present":
            value: Node = Lit(True)
        else:
            def match(code: Code) -> Node:
                return all_of(eq(get(x, "system.value"), Lit(code.system)), eq(get(x, "code.value"), Lit(code.code)))
            value = op("First", Query("X", get(p, "outcome.coding"), where=any_of(*map(match, source.outcomes)),
                                      ret=Case(None, tuple((match(code), Lit(v)) for code, v in source.outcomes.items()), NULL)))
        return Query("P", Retrieve("Procedure", self._value_set(index, source.codes)), lets=(("When", date),),
                     where=eq(get(p, "status.value"), Lit("completed")), ret=_when(WHEN, value))

    def _patient(self) -> Node:
        p = Alias("P")
        birth = get(p, "birthDate.value")
        age = If(any_of(op("IsNull", op("Component", birth, precision="Day")), op("Less", AS_OF, birth)), NULL,
                 op("AgeAt", birth, AS_OF, precision="Year"))
        # The birth date bounds the service date but ranks below every dated value.
        return Query("P", Retrieve("Patient"), ret=TupleOf((("value", age), ("dated", birth), ("instant", NULL),
                                                            ("attested", Lit(False)))))

    def _scored(self, source: ScoredQuestionnaireSource) -> Node:
        r, n, x, y = Alias("R"), Alias("N"), Alias("X"), Alias("Y")
        known = op("Exists", Query("N", Retrieve("Questionnaire"), where=all_of(
            eq(get(n, "url.value"), get(r, "questionnaire")),
            op("Exists", Query("Y", get(n, "code"), where=_codes_match(y, source.questionnaire, single=True))))))
        seen = op("Count", op("Distinct", Query("X", get(r, "items"), where=in_list(get(x, "linkId.value"), source.items),
                                                 ret=get(x, "linkId.value"))))
        first_answer = op("First", get(x, "answer"))
        number = Call("Number", (first_answer,))
        coding = As(get(first_answer, "value"), "Coding")
        is_score = in_list(get(x, "linkId.value"), source.score_link_ids) if source.score_link_ids else Lit(False)
        if source.score_codes:
            is_score = any_of(is_score, _codes_match(coding, source.score_codes, single=True))
        score = op("First", Query("X", get(r, "items"), where=all_of(op("Exists", get(x, "answer")), is_score, not_null(number)),
                                  ret=number))
        ordinals = Query("X", get(r, "items"), where=all_of(in_list(get(x, "linkId.value"), source.items),
                                                            op("Exists", get(x, "answer"))), ret=number)
        o = Alias("Ordinals", let=True)
        computed = If(op("GreaterOrEqual", op("Count", o), Lit(source.min_answered)), op("Round", op("Multiply", op(
            "Divide", op("Sum", o), op("Multiply", Lit(float(source.item_maximum)), op("ToDecimal", op("Count", o)))),
            Lit(100.0)), Lit(2)), NULL)
        value = op("Coalesce", Alias("Score", let=True), computed)
        return Query("R", Ref("Responses"), lets=(("Known", known), ("Seen", seen), ("Score", score), ("Ordinals", ordinals)),
                     where=any_of(Alias("Known", let=True), op("GreaterOrEqual", Alias("Seen", let=True), Lit(source.min_answered))),
                     ret=TupleOf((("value", value), ("dated", get(r, "dated")), ("instant", get(r, "instant")),
                                  ("attested", Lit(False)))))

    # -- answers of an earlier response to the field's own linkId --

    def _answers(self) -> Node:
        spec = self.spec
        r, x, a = Alias("R"), Alias("X"), Alias("A")
        item, given, read = Alias("I", let=True), Alias("Given", let=True), Alias("Read", let=True)
        value: Node
        if spec.kind == "code_list":
            value = Query("A", get(item, "answer"), ret=_choice(get(a, "value")))
        elif spec.kind == "boolean":
            coded = get(As(given, "Coding"), "code.value")
            value = op("Coalesce", get(As(given, "boolean"), "value"),
                       Case(coded, ((Lit("Y"), Lit(True)), (Lit("N"), Lit(False))), NULL))
        elif spec.kind == "integer":
            value = get(As(given, "integer"), "value")
        elif spec.kind == "number":
            q = As(given, "Quantity")
            value = op("Coalesce", get(As(given, "decimal"), "value"), op("ToDecimal", get(As(given, "integer"), "value")),
                       If(eq(_unit_name(q), Lit(spec.unit or "1")), get(q, "value.value"), NULL))
        else:  # enum
            value = If(in_list(_choice(given), spec.choices), _choice(given), NULL)
        result: Node = read
        if spec.kind in ("integer", "number"):  # an answer out of the field's range is not read
            bounds = [op("Less", read, Lit(spec.minimum)) if spec.minimum is not None else None,
                      op("Less", Lit(spec.maximum), read) if spec.maximum is not None else None]
            bounds = [b for b in bounds if b is not None]
            if bounds:
                result = If(any_of(*bounds), NULL, read)
        if spec.kind != "code_list":  # one answer only
            result = If(eq(op("Count", get(item, "answer")), Lit(1)), result, NULL)
        found = op("Last", Query("X", get(r, "items"), where=all_of(eq(get(x, "linkId.value"), Lit(spec.path)),
                                                                    op("Exists", get(x, "answer")))))
        return Query("R", Ref("Responses"),
                     lets=(("I", found), ("Given", get(op("First", get(item, "answer")), "value")), ("Read", value)),
                     where=not_null(item),
                     ret=TupleOf((("value", result), ("dated", get(r, "dated")), ("instant", get(r, "instant")),
                                  ("attested", get(r, "attested")))))


def _choice(value: Node) -> Op:
    return op("Coalesce", get(As(value, "Coding"), "code.value"), get(As(value, "string"), "value"))


def _codes_match(node: Node, codes: tuple[Code, ...], single: bool = False) -> Node:
    """Whether a Coding (``single``) or a CodeableConcept's codings match one of ``codes``."""
    y = Alias("Z")
    target = node if single else y
    match = any_of(*(all_of(eq(get(target, "system.value"), Lit(c.system)), eq(get(target, "code.value"), Lit(c.code)))
                     for c in codes))
    return match if single else op("Exists", Query("Z", get(node, "coding"), where=match))


def _unit_name(q: Node) -> Node:
    """The UCUM unit a Quantity is in, as the intake names it: its code (UCUM or no system), else
    its unit text, else ``1`` (a pure number); null for a code of another system."""
    return If(not_null(get(q, "code")),
              If(any_of(op("IsNull", get(q, "system")), eq(get(q, "system.value"), Lit(UCUM))), get(q, "code.value"), NULL),
              op("Coalesce", get(q, "unit.value"), Lit("1")))


def _in_units(value: Node, unit: Node, units: dict[str, float]) -> Node:
    """A value in one of the declared units, times its factor (rounded to 4 places); null otherwise."""
    whens = tuple((Lit(name), value if factor == 1 else op("Round", op("Multiply", value, Lit(float(factor))), Lit(4)))
                  for name, factor in units.items())
    return Case(unit, whens, NULL)


def _completed_months(start: Node, end: Node) -> Node:
    def part(node: Node, p: str) -> Op:
        return op("Component", node, precision=p)
    months = op("Add", op("Multiply", op("Subtract", part(end, "Year"), part(start, "Year")), Lit(12)),
                op("Subtract", part(end, "Month"), part(start, "Month")))
    return op("Subtract", months, If(op("Less", part(end, "Day"), part(start, "Day")), Lit(1), Lit(0)))
