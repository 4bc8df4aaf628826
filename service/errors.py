"""Errors a client can cause, shaped once for the API (HTTP 422) and the CLI (exit 2)."""

from __future__ import annotations

from typing import Any, Iterable

from pydantic import ValidationError

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
    """A case (or batch, or reviewer's note) that cannot be taken; ``errors`` names each offending field."""

    def __init__(self, errors: list[dict[str, str]], detail: str = "The case is invalid."):
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors
        self.detail = detail

    @classmethod
    def one(cls, field: str, message: str, type_: str = "value_error") -> "InvalidInput":
        return cls([{"field": field, "message": message, "type": type_}])

    @classmethod
    def from_validation_error(
        cls, error: ValidationError, prefix: str = "", detail: str = "The case is invalid."
    ) -> "InvalidInput":
        return cls(
            [
                {
                    "field": field_path(e["loc"], prefix),
                    "message": _MESSAGES.get(e["type"], e["msg"]),
                    "type": e["type"],
                }
                for e in error.errors(include_url=False, include_input=False)
            ],
            detail,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"detail": self.detail, "errors": self.errors}
