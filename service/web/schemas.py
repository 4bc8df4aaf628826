"""Shapes of the service's error bodies, for the OpenAPI documentation."""

from typing import Literal

from pydantic import BaseModel


class ErrorResponse(BaseModel):
    detail: str


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class InvalidRequestResponse(BaseModel):
    detail: str
    errors: list[FieldError]


class Health(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"]


class ReadinessChecks(BaseModel):
    database: Literal["ok", "unavailable"]
    rules: Literal["ok", "not loaded"]


class Readiness(BaseModel):
    """Readiness: ``ready`` (200) when every check is ``ok``, else ``not_ready`` (503)."""

    status: Literal["ready", "not_ready"]
    checks: ReadinessChecks
