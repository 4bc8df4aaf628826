"""Shapes of the service's error bodies, for the OpenAPI documentation."""

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
