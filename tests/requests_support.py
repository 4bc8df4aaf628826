"""Helpers for the requests and determinations tests: submissions through the real API, a
reviewer's determination, and the rows behind them."""

from __future__ import annotations

import copy
from typing import Any


from conftest import FULL_CASE
from service.store.requests import Request

DENIAL_REASON = "Back pain NRS 3 is below the policy's threshold of 6 (ISASS-RN-04)."


def case(external_id: str = "INTAKE-1", **changes: Any) -> dict[str, Any]:
    """The contract's example case under another reference; ``nrs=3`` and the like change a field
    of any section by name, ``priority=…`` sets the priority."""
    made = copy.deepcopy(FULL_CASE)
    made["external_id"] = external_id
    for name, value in changes.items():
        if name in ("priority", "policy", "service_date"):
            made[name] = value
            continue
        section = next(s for s, fields in made.items() if isinstance(fields, dict) and name in fields)
        made[section][name] = value
    return made


def submit(client, key: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    answer = client.post("/v1/evaluations", json=body, headers={"X-API-Key": key, **headers})
    assert answer.status_code == 201, answer.text
    return answer.json()


def determine(client, key: str, request_id: str, evaluation_id: str, outcome: str = "approved", **body: Any):
    """POST a determination (attested unless ``attestation`` is given); the response."""
    sent = {"evaluation_id": evaluation_id, "outcome": outcome, "attestation": True, **body}
    if outcome in ("denied", "partially_approved"):
        sent.setdefault("reason", DENIAL_REASON)
        sent.setdefault("criteria", ["ISASS-RN-04"])
    return client.post(f"/v1/requests/{request_id}/determinations", json=sent, headers={"X-API-Key": key})


def request_row(database, request_id: str) -> Request | None:
    with database.session() as session:
        return session.get(Request, request_id)
