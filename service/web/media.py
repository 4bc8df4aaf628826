"""Bodies in and out as the faces handle them: the media type of a Content-Type, a JSON body read
by the service's one JSON reader, and a FHIR resource as a response."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Response

from service.errors import InvalidInput
from service.fhir.outcome import FHIR_JSON
from service.json_input import parse_json

_JSON = "application/json"


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, without parameters, in lower case."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_json_body(content_type: str | None, body: bytes) -> Any:
    sent = media_type(content_type)
    if sent != _JSON and not sent.endswith("+json"):
        raise InvalidInput.one(
            "headers.content-type", "The case must be sent as application/json.", "content_type"
        )
    return parse_json(body)


def fhir_response(resource: dict[str, Any], status: int = 200) -> Any:
    return Response(json.dumps(resource, ensure_ascii=False), status_code=status, media_type=FHIR_JSON,
                    headers={"Cache-Control": "no-store"})
