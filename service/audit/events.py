"""Stored audit records as ``GET /v1/audit`` shows them: JSON events, or FHIR R4 AuditEvents
(one a line, for ``Accept: application/fhir+ndjson``)."""

from __future__ import annotations

from typing import Any

from service.audit.record import OPERATOR
from service.store.tables import as_utc

_DICOM = "http://dicom.nema.org/resources/ontology/DCM"
_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
_NETWORK_IP = "2"  # AuditEvent.agent.network.type: an IP address
SYSTEM = "urn:coverage-criteria"
# action -> (AuditEvent.type, subtype or None, AuditEvent.action)
_FHIR_ACTIONS: dict[str, tuple[dict[str, str], dict[str, str] | None, str]] = {
    "read": ({"system": _EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
             {"system": _INTERACTION, "code": "read", "display": "read"}, "R"),
    "search": ({"system": _EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
               {"system": _INTERACTION, "code": "search-type", "display": "search type"}, "E"),
    "create": ({"system": _EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
               {"system": _INTERACTION, "code": "create", "display": "create"}, "C"),
    "export": ({"system": _DICOM, "code": "110106", "display": "Export"}, None, "R"),
    "sign-in": ({"system": _DICOM, "code": "110114", "display": "User Authentication"},
                {"system": _DICOM, "code": "110122", "display": "Login"}, "E"),
    "sign-in-failed": ({"system": _DICOM, "code": "110114", "display": "User Authentication"},
                       {"system": _DICOM, "code": "110122", "display": "Login"}, "E"),
}


def event(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record (the columns of ``store/audit.py``) as the API's event."""
    if record["actor_client"] is not None:
        actor: dict[str, Any] | None = {"client": record["actor_client"], "key_id": record["actor_key_id"]}
    elif record["actor_key_id"] is not None or record["actor_role"] == OPERATOR:
        actor = {"key_id": record["actor_key_id"], "name": record["actor_name"], "role": record["actor_role"]}
    else:
        actor = None
    return {
        "id": record["id"],
        "at": _instant(record["at"]),
        "actor": actor,
        "organization": record["organization"],
        "action": record["action"],
        "resource": record["resource"],
        "resource_id": record["resource_id"],
        "status": record["status"],
        "client_ip": record["client_ip"],
    }


def audit_event(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record as a FHIR R4 AuditEvent."""
    kind, subtype, action = _FHIR_ACTIONS[record["action"]]
    status = record["status"]
    agent: dict[str, Any] = {"requestor": True}
    if record["actor_client"] is not None:
        agent["who"] = {"identifier": {"system": f"{SYSTEM}:cds-client", "value": record["actor_client"]},
                        "display": f"CDS Hooks client {record['actor_client']}"}
        agent["role"] = [{"text": "CDS Hooks client"}]
    elif record["actor_key_id"] is not None:
        agent["who"] = {"identifier": {"system": f"{SYSTEM}:api-key", "value": record["actor_key_id"]}}
        if record["actor_name"]:
            agent["who"]["display"] = agent["name"] = record["actor_name"]
        agent["role"] = [{"text": record["actor_role"]}]
    elif record["actor_role"] == OPERATOR:
        agent["who"] = {"display": record["actor_name"]}
        agent["name"] = record["actor_name"]
        agent["role"] = [{"text": "operator at the command line"}]
    else:
        agent["who"] = {"display": "unauthenticated client"}
    if record["client_ip"]:
        agent["network"] = {"address": record["client_ip"], "type": _NETWORK_IP}
    agents = [agent]
    if record["organization"] is not None:
        agents.append({"type": {"text": "organization"}, "requestor": False,
                       "who": {"identifier": {"system": f"{SYSTEM}:organization", "value": record["organization"]}}})
    entity: dict[str, Any] = {"type": {"system": f"{SYSTEM}:resource", "code": record["resource"]}}
    if record["resource_id"] is not None:
        entity["what"] = {"identifier": {"system": f"{SYSTEM}:{record['resource']}", "value": record["resource_id"]}}
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": record["id"],
        "type": kind,
        **({"subtype": [subtype]} if subtype else {}),
        "action": action,
        "recorded": _instant(record["at"], fraction=True),
        # 0 success, 4 minor failure (the client's: 4xx), 8 serious failure (the service's: 5xx)
        "outcome": "0" if status < 400 else "4" if status < 500 else "8",
        "outcomeDesc": (f"command line, as HTTP {status}" if record["actor_role"] == OPERATOR else f"HTTP {status}")
        + (" (sign-in refused)" if record["action"] == "sign-in-failed" else ""),
        "agent": agents,
        "source": {"observer": {"display": "coverage-criteria"},
                   "type": [{"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
        "entity": [entity],
    }
    return resource


def _instant(moment: Any, fraction: bool = False) -> str:
    text = as_utc(moment).isoformat(timespec="microseconds" if fraction else "seconds")
    return text.replace("+00:00", "Z")
