"""Errors a client can cause; each carries its HTTP status, and each face renders it (JSON,
OperationOutcome, HTML; the CLI exits 2):

    InvalidInput        422  a case, a body or a query that cannot be used; names each field
    RefusedRequest           a request that is well formed but cannot be carried out
     +-- NotFound       404  no such thing (for this caller: another organization's id too)
     +-- Conflict       409  the thing is not in the state the request assumed
"""

from __future__ import annotations

from typing import Any, Iterable

from pydantic import ValidationError

# An error body lists at most this many field errors (and says how many there were): a 1 MiB body
# of unknown fields would otherwise get a ten times larger answer.
MAX_LISTED_ERRORS = 100

_MESSAGES = {
    "extra_forbidden": "Unknown field: it is not part of the case contract",
    "missing": "Field required",
}


def field_path(loc: Iterable[Any], prefix: str = "") -> str:
    """``('low_back_pain', 'nrs')`` -> ``low_back_pain.nrs``; list positions as ``[0]``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "case"


class InvalidInput(Exception):
    """A case (or batch) that cannot be evaluated; ``errors`` names each offending field: the
    first MAX_LISTED_ERRORS of them, and ``count`` says how many there were in all (only those
    listed are ever shaped, so a body full of errors costs no more to answer than to read)."""

    def __init__(self, errors: list[dict[str, str]], detail: str = "The case is invalid.",
                 count: int | None = None):
        self.errors = errors[:MAX_LISTED_ERRORS]
        self.count = len(errors) if count is None else count
        self.detail = detail
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in self.errors))

    @classmethod
    def one(cls, field: str, message: str, type_: str = "value_error") -> "InvalidInput":
        return cls([{"field": field, "message": message, "type": type_}])

    @classmethod
    def combined(cls, errors: list["InvalidInput"]) -> "InvalidInput":
        """One error for several (a batch): their listed errors in order, their counts added."""
        return cls([e for error in errors for e in error.errors], errors[0].detail, sum(e.count for e in errors))

    @classmethod
    def from_validation_error(cls, error: ValidationError | Any, prefix: str = "",
                              detail: str = "The case is invalid.") -> "InvalidInput":
        """From pydantic's errors (a ValidationError, or FastAPI's RequestValidationError)."""
        found = error.errors(**({"include_url": False, "include_input": False}
                                if isinstance(error, ValidationError) else {}))
        listed = [
            {"field": field_path(e["loc"], prefix), "message": _MESSAGES.get(e["type"], e["msg"]), "type": e["type"]}
            for e in found[:MAX_LISTED_ERRORS]
        ]
        return cls(listed, detail, len(found))

    def to_dict(self) -> dict[str, Any]:
        """The error body: the first MAX_LISTED_ERRORS errors, and how many there were in all."""
        detail = self.detail
        if self.count > len(self.errors):
            detail = f"{detail.rstrip('.')}: {self.count} field errors, the first {len(self.errors)} are listed."
        return {"detail": detail, "errors": self.errors, "error_count": self.count}


class RefusedRequest(Exception):
    """A well-formed request the service will not carry out; ``status`` is its HTTP status and
    ``detail`` says why in words (never a case value)."""

    status = 400

    def __init__(self, detail: str):
        self.detail = detail
        super().__init__(detail)


class NotFound(RefusedRequest):
    status = 404


class Conflict(RefusedRequest):
    status = 409
