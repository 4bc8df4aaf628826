"""What every /fhir operation shares: errors as one OperationOutcome (an auth failure, a rate
limit and a malformed request included, with the status and headers they would have had), the
FHIR base a client called, and bodies read as FHIR JSON."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from service.errors import InvalidInput
from service.fhir.outcome import FHIR_JSON, Issue, OperationOutcomeError, operation_outcome
from service.fhir.parse import read_json
from service.json_output import json_bytes

_CODES = {401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 409: "conflict",
          413: "too-costly", 429: "throttled"}


class FhirRoute(APIRoute):
    """A route whose every error is an OperationOutcome (``application/fhir+json``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except OperationOutcomeError as error:
                return outcome_response(error.to_resource(), error.status)
            except HTTPException as error:
                issue = Issue(_CODES.get(error.status_code, "processing"), str(error.detail))
                return outcome_response(operation_outcome([issue]), error.status_code, error.headers)
            except RequestValidationError as error:
                invalid = InvalidInput.from_validation_error(error, detail="The request is invalid.")
                return outcome_response(OperationOutcomeError.from_invalid_input(invalid).to_resource(), 422)
            except InvalidInput as error:
                return outcome_response(OperationOutcomeError.from_invalid_input(error).to_resource(), 422)

        return handle


def fhir_answer(resource: dict[str, Any], status: int = 200) -> Response:
    """A FHIR resource as the answer (orjson: a ~300 kB package is written in a fraction of a ms)."""
    return Response(json_bytes(resource), status_code=status, media_type=FHIR_JSON, headers={"Cache-Control": "no-store"})


def fhir_router() -> APIRouter:
    return APIRouter(route_class=FhirRoute, responses={
        status: {"description": "An OperationOutcome", **FHIR_ANSWER} for status in (401, 403, 429, 503)})


def outcome_response(resource: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(resource, status_code=status, media_type=FHIR_JSON, headers=headers)


def service_root(request: Request) -> str:
    """The service's public address (``COVERAGE_CRITERIA_PUBLIC_URL``, as CDS Hooks names its
    questionnaires), else the one the client called; no trailing slash."""
    configured = getattr(request.app.state, "public_url", None)
    return (configured or str(request.base_url)).rstrip("/")


def fhir_base(request: Request) -> str:
    return f"{service_root(request)}/fhir"


async def fhir_body(request: Request) -> Any:
    """The request body as JSON; 400 with an OperationOutcome when it is not."""
    return read_json(await request.body())


# Documentation of the bodies (the handlers read them): any FHIR resource.
FHIR_BODY = {"requestBody": {"required": True, "content": {FHIR_JSON: {"schema": {"type": "object"}}}}}
FHIR_ANSWER = {"content": {FHIR_JSON: {"schema": {"type": "object"}}}}
