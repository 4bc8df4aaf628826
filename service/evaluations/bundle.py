"""Evaluate a FHIR Bundle: read the case, then evaluate it as any case; the API and the CLI share it.

Errors come back as an OperationOutcome: a case field the engine refuses (an NRS of 15) is named
by the FHIRPath of the element it was read from, not by its case path alone.
"""

from __future__ import annotations

import datetime
from contextlib import contextmanager
from typing import Any, Iterator

from service.engine.evaluation import Evaluator
from service.errors import InvalidInput
from service.fhir.intake import BundleCase, case_from_bundle
from service.fhir.outcome import OperationOutcomeError


def read_bundle(evaluator: Evaluator, bundle: Any, *, external_id: str | None = None, policy: str | None = None,
                service_date: str | None = None, today: datetime.date | None = None,
                base: dict[str, Any] | None = None) -> BundleCase:
    return case_from_bundle(bundle, evaluator.dictionary, external_id=external_id, policy=policy,
                            service_date=service_date, today=today, base=base)


def evaluate_bundle(evaluator: Evaluator, bundle: Any, **query: Any) -> tuple[BundleCase, dict[str, Any]]:
    """The case a Bundle documents, and its result (evidence read from FHIR cites its resource)."""
    read = read_bundle(evaluator, bundle, **query)
    with outcome_errors(read):
        result = evaluator.evaluate(read.case, provenance=read.fhir.provenance)
    return read, result


def evidence_sources(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The FHIR source of each field's evidence in a result, so a later evaluation built on its
    case still cites where those values came from."""
    items = [e for f in (*result.get("criteria", []), *result.get("flags", [])) for e in f.get("evidence", [])]
    return {e["field"]: e["source"] for e in (*items, *result.get("other_evidence", [])) if "source" in e}


@contextmanager
def outcome_errors(read: BundleCase) -> Iterator[None]:
    """Turn the case errors raised inside into an OperationOutcome naming the FHIR elements."""
    try:
        yield
    except InvalidInput as error:
        raise OperationOutcomeError.from_invalid_input(error, read.fhir.expressions) from None
