"""What every generated pre-population library shares: the service date, the date helpers
(``Day``, ``Instant``, ``Last Day``), the items of a QuestionnaireResponse flattened, an answer's
number, and the completed responses of the chart (``Responses``)."""

from __future__ import annotations

from collections.abc import Iterable

from service.fhir.dtr.expr import (
    NULL,
    Alias,
    As,
    Call,
    Define,
    Function,
    If,
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
    all_of,
    get,
    op,
    strings,
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


def in_list(node: Node, values: Iterable[str]) -> Op:
    return op("In", node, strings(*values))


def first_date(*candidates: Node) -> Node:
    return op("Coalesce", *candidates)


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
        in_list(get(e, "url.value"), ORDINAL_URLS), not_null(number_of(get(e, "value")))), ret=number_of(get(e, "value"))))
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
                 op("Coalesce", number_of(get(answer, "value")), get(As(get(answer, "value"), "Quantity"), "value.value"), ordinal),
                 "An answer's number: a decimal, an integer, a quantity's value, or a coding's ordinal value."),
    ]


def number_of(value: Node) -> Op:
    return op("Coalesce", get(As(value, "decimal"), "value"), op("ToDecimal", get(As(value, "integer"), "value")))


def common_defines() -> list[Define]:
    r = Alias("R")
    authored = get(r, "authored.value")
    return [
        Define("As Of", op("Coalesce", Param(SERVICE_DATE), op("Today")),
               "Values are read as of the service date (today when the client gives none)."),
        Define("Responses", Query("R", Retrieve("QuestionnaireResponse"),
                                  where=in_list(get(r, "status.value"), ("completed", "amended")),
                                  ret=TupleOf((("questionnaire", get(r, "questionnaire.value")),
                                               ("attested", op("Coalesce", op("Matches", get(r, "questionnaire.value"),
                                                                              Lit(OWN_QUESTIONNAIRE)), Lit(False))),
                                               ("items", Call("Items", (get(r, "item"),))),
                                               ("dated", Call("Day", (authored,))),
                                               ("instant", Call("Instant", (authored,)))))),
               "Completed QuestionnaireResponses, their items flattened; an answer to this service's own "
               "questionnaire attests the chart as of the request, whatever its authored date."),
    ]
