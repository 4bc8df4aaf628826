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

from collections.abc import Iterable
from typing import Any

from service.fhir.dtr.expr import (
    NULL,
    Alias,
    As,
    Call,
    Case,
    CodeLit,
    Define,
    Function,
    If,
    Is,
    ListOf,
    Lit,
    Node,
    Op,
    Operand,
    Param,
    Qty,
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
    strings,
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

UCUM = "http://unitsofmeasure.org"
YES_NO = "http://terminology.hl7.org/CodeSystem/v2-0136"  # Y / N: how DTR forms ask a yes/no question
ORDINAL_URLS = ("http://hl7.org/fhir/StructureDefinition/ordinalValue",
                "http://hl7.org/fhir/StructureDefinition/itemWeight")
SERVICE_DATE = "Service Date"  # the parameter; "As Of" falls back to today (a DTR client passes none)
AS_OF = Ref("As Of")
ITEM_DEPTH = 4  # levels of QuestionnaireResponse items read (groups, questions, and two more)
# A response to this service's own questionnaires (service.fhir.answers.OWN_QUESTIONNAIRE, as a whole-string pattern)
OWN_QUESTIONNAIRE = r".*/v1/(evaluations|policies)/[^/|]+/questionnaire(\|[^/]*)?"


def not_null(node: Node) -> Op:
    return op("Not", op("IsNull", node))


def _in(node: Node, values: Iterable[str]) -> Op:
    return op("In", node, strings(*values))


def _first_date(*candidates: Node) -> Node:
    return op("Coalesce", *candidates)


def _when(alias: Alias, date: Node, value: Node) -> TupleOf:
    return TupleOf((("value", value), ("dated", Call("Day", (date,))), ("instant", Call("Instant", (date,))),
                    ("attested", Lit(False))))


# --- shared definitions ----------------------------------------------------------------------------

def common_functions() -> list[Function]:
    d = Operand("d")
    month, day = op("Component", d, precision="Month"), op("Component", d, precision="Day")
    year = op("Component", d, precision="Year")
    last_of_month = op("Subtract", op("Add", op("Date", year, month, Lit(1)), Qty(1, "month")), Qty(1, "day"))
    items = Operand("items")
    i, a, x = Alias("I"), Alias("A"), Alias("X")
    children = op("Flatten", ListOf((
        op("Flatten", Query("I", items, where=not_null(get(i, "item")), ret=get(i, "item"))),
        op("Flatten", op("Flatten", Query("I", items, where=not_null(get(i, "answer")), ret=Query(
            "A", get(i, "answer"), where=not_null(get(a, "item")), ret=get(a, "item"))))))))
    levels: list[Node] = [items]
    for _ in range(ITEM_DEPTH - 1):
        levels.append(Call("Children", (levels[-1],)))
    answer = Operand("A")
    coding = As(get(answer, "value"), "Coding")
    e = Alias("E")
    ordinal = op("First", Query("E", get(coding, "extension"), where=all_of(
        _in(get(e, "url.value"), ORDINAL_URLS), not_null(_number_of(get(e, "value")))), ret=_number_of(get(e, "value"))))
    item_list = "List<FHIR.QuestionnaireResponse.Item>"
    return [
        Function("Day", (("d", "DateTime"),), If(op("IsNull", d), NULL, op(
            "Date", year, op("Coalesce", month, Lit(1)), op("Coalesce", day, Lit(1)))),
                 "The day a date speaks for as written; a partial date is its first day."),
        Function("Instant", (("d", "DateTime"),), If(op("IsNull", d), NULL, op(
            "DateTime", year, op("Coalesce", month, Lit(1)), op("Coalesce", day, Lit(1)),
            *(op("Coalesce", op("Component", d, precision=p), Lit(0)) for p in ("Hour", "Minute", "Second", "Millisecond")),
            op("Coalesce", op("TimezoneOffset", d), Lit(0.0)))),
                 "A date as a full instant for ordering (a partial date is its first moment, no offset is UTC)."),
        Function("Last Day", (("d", "DateTime"),), If(op("IsNull", d), NULL, If(op("IsNull", month), op("Date", year, Lit(12), Lit(31)), If(
            op("IsNull", day), last_of_month, op("Date", year, month, day)))),
                 "A partial onset counts from its last day (a lower bound on the time since)."),
        Function("Children", (("items", item_list),), children,
                 "The items nested in items, directly or under their answers."),
        Function("Items", (("items", item_list),), Query("X", op("Flatten", ListOf(tuple(levels))), where=not_null(x)),
                 f"Every item of a response, {ITEM_DEPTH} levels deep."),
        Function("Number", (("A", "FHIR.QuestionnaireResponse.Item.Answer"),),
                 op("Coalesce", _number_of(get(answer, "value")), get(As(get(answer, "value"), "Quantity"), "value.value"), ordinal),
                 "An answer's number: a decimal, an integer, a quantity's value, or a coding's ordinal value."),
    ]


def _number_of(value: Node) -> Op:
    return op("Coalesce", get(As(value, "decimal"), "value"), op("ToDecimal", get(As(value, "integer"), "value")))


def common_defines() -> list[Define]:
    r = Alias("R")
    authored = get(r, "authored.value")
    return [
        Define("As Of", op("Coalesce", Param(SERVICE_DATE), op("Today")),
               "Values are read as of the service date (today when the client gives none)."),
        Define("Responses", Query("R", Retrieve("QuestionnaireResponse"),
                                  where=_in(get(r, "status.value"), ("completed", "amended")),
                                  ret=TupleOf((("questionnaire", get(r, "questionnaire.value")),
                                               ("attested", op("Coalesce", op("Matches", get(r, "questionnaire.value"),
                                                                              Lit(OWN_QUESTIONNAIRE)), Lit(False))),
                                               ("items", Call("Items", (get(r, "item"),))),
                                               ("dated", Call("Day", (authored,))),
                                               ("instant", Call("Instant", (authored,)))))),
               "Completed QuestionnaireResponses, their items flattened; an answer to this service's own "
               "questionnaire attests the chart as of the request, whatever its authored date."),
    ]


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
        date = _first_date(get(As(get(o, "effective"), "dateTime"), "value"),
                           get(As(get(o, "effective"), "Period"), "end.value"),
                           get(As(get(o, "effective"), "Period"), "start.value"),
                           get(As(get(o, "effective"), "instant"), "value"), get(o, "issued.value"))
        return Query("O", Retrieve("Observation", self._value_set(index, source.codes)),
                     lets=(("Q", As(value, "Quantity")), ("Unit", _unit_name(q))),
                     where=_in(get(o, "status.value"), ("final", "amended", "corrected")),
                     ret=_when(o, date, read))

    def _condition(self, source: ConditionSource) -> Node:
        c, x = Alias("C"), Alias("X")
        matching = any_of(*(all_of(eq(get(x, "system.value"), Lit(code.system)),
                                   op("StartsWith", get(x, "code.value"), Lit(code.code)))
                            if code.code is not None else eq(get(x, "system.value"), Lit(code.system))
                            for code in source.codes))
        refuted = op("Exists", Query("X", get(c, "verificationStatus.coding"),
                                     where=_in(get(x, "code.value"), ("refuted", "entered-in-error"))))
        onset = op("Coalesce", get(As(get(c, "onset"), "dateTime"), "value"),
                   get(As(get(c, "onset"), "Period"), "start.value"))
        date = _first_date(get(c, "recordedDate.value"), onset)
        if source.read == "present":
            value: Node = Lit(True)
        elif source.read == "codes":
            codes = Query("X", get(c, "code.coding"), where=matching, ret=get(x, "code.value"))
            value = If(op("Exists", codes), codes, NULL)
        else:  # onset_months: completed months from the onset's last day to the service date
            start = Call("Last Day", (onset,))
            value = If(any_of(op("IsNull", start), op("Less", AS_OF, start)), NULL, _completed_months(start, AS_OF))
        return Query("C", Retrieve("Condition"),
                     where=all_of(op("Exists", Query("X", get(c, "code.coding"), where=matching)), op("Not", refuted)),
                     ret=_when(c, date, value))

    def _procedure(self, index: int, source: ProcedureSource) -> Node:
        p, x = Alias("P"), Alias("X")
        date = _first_date(get(As(get(p, "performed"), "dateTime"), "value"),
                           get(As(get(p, "performed"), "Period"), "end.value"),
                           get(As(get(p, "performed"), "Period"), "start.value"))
        if source.read == "present":
            value: Node = Lit(True)
        else:
            def match(code: Code) -> Node:
                return all_of(eq(get(x, "system.value"), Lit(code.system)), eq(get(x, "code.value"), Lit(code.code)))
            value = op("First", Query("X", get(p, "outcome.coding"), where=any_of(*map(match, source.outcomes)),
                                      ret=Case(None, tuple((match(code), Lit(v)) for code, v in source.outcomes.items()), NULL)))
        return Query("P", Retrieve("Procedure", self._value_set(index, source.codes)),
                     where=eq(get(p, "status.value"), Lit("completed")), ret=_when(p, date, value))

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
        seen = op("Count", op("Distinct", Query("X", get(r, "items"), where=_in(get(x, "linkId.value"), source.items),
                                                 ret=get(x, "linkId.value"))))
        first_answer = op("First", get(x, "answer"))
        number = Call("Number", (first_answer,))
        coding = As(get(first_answer, "value"), "Coding")
        is_score = _in(get(x, "linkId.value"), source.score_link_ids) if source.score_link_ids else Lit(False)
        if source.score_codes:
            is_score = any_of(is_score, _codes_match(coding, source.score_codes, single=True))
        score = op("First", Query("X", get(r, "items"), where=all_of(op("Exists", get(x, "answer")), is_score, not_null(number)),
                                  ret=number))
        ordinals = Query("X", get(r, "items"), where=all_of(_in(get(x, "linkId.value"), source.items),
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
        item = Alias("I", let=True)
        answer = op("First", get(item, "answer"))
        single = eq(op("Count", get(item, "answer")), Lit(1))
        value: Node
        if spec.kind == "code_list":
            value = Query("A", get(item, "answer"), ret=_choice(get(a, "value")))
        elif spec.kind == "boolean":
            coded = get(As(get(answer, "value"), "Coding"), "code.value")
            value = op("Coalesce", get(As(get(answer, "value"), "boolean"), "value"),
                       Case(coded, ((Lit("Y"), Lit(True)), (Lit("N"), Lit(False))), NULL))
        elif spec.kind == "integer":
            value = get(As(get(answer, "value"), "integer"), "value")
        elif spec.kind == "number":
            q = As(get(answer, "value"), "Quantity")
            value = op("Coalesce", get(As(get(answer, "value"), "decimal"), "value"),
                       op("ToDecimal", get(As(get(answer, "value"), "integer"), "value")),
                       If(eq(_unit_name(q), Lit(spec.unit or "1")), get(q, "value.value"), NULL))
        else:  # enum
            chosen = _choice(get(answer, "value"))
            value = If(_in(chosen, spec.choices), chosen, NULL)
        if spec.kind in ("integer", "number"):  # an answer out of the field's range is not read
            bounds = [op("Less", value, Lit(spec.minimum)) if spec.minimum is not None else None,
                      op("Less", Lit(spec.maximum), value) if spec.maximum is not None else None]
            bounds = [b for b in bounds if b is not None]
            if bounds:
                value = If(any_of(*bounds), NULL, value)
        if spec.kind != "code_list":
            value = If(single, value, NULL)
        found = op("Last", Query("X", get(r, "items"), where=all_of(eq(get(x, "linkId.value"), Lit(spec.path)),
                                                                    op("Exists", get(x, "answer")))))
        return Query("R", Ref("Responses"), lets=(("I", found),), where=not_null(item),
                     ret=TupleOf((("value", value), ("dated", get(r, "dated")), ("instant", get(r, "instant")),
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
