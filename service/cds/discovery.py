"""The CDS Hooks services this engine offers: one ``order-sign`` and one ``order-select`` service for
each policy that declares order codes (``orders:`` in its ``policy.yaml``), and the discovery
document (``GET /cds-services``) that describes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.fhir.intake import field_sources
from service.policy.sources import ObservationSource
from service.policy.rules import Catalog, OrderCode

HOOKS = ("order-sign", "order-select")
CRD_VERSIONS = ("2.0", "2.1", "2.2")



def prefetch_templates(dictionary: Any) -> dict[str, str]:
    """What the services ask the EHR to send (CDS Hooks 2.0 prefetch templates); what a client
    leaves out is read from its FHIR server with the same queries (service.cds.ehr_client).
    Observations are asked for by the codes the field dictionary reads them by (``fhir:``)."""
    codes = sorted({str(code) for sources in field_sources(dictionary).values() for source in sources
                    if isinstance(source, ObservationSource) for code in source.codes if code.code})
    return {
        "patient": "Patient/{{context.patientId}}",
        "coverage": "Coverage?patient={{context.patientId}}&status=active",
        "observations": "Observation?patient={{context.patientId}}" + (f"&code={','.join(codes)}" if codes else ""),
        "conditions": "Condition?patient={{context.patientId}}",
        "procedures": "Procedure?patient={{context.patientId}}",
        "questionnaireResponses": "QuestionnaireResponse?patient={{context.patientId}}",
    }


CONFIGURATION_OPTIONS = [
    {
        "code": "coverage-info",
        "type": "boolean",
        "name": "Coverage Information",
        "description": "Adds to each order of the policy which of its criteria the record documents as met, "
        "not met or not yet documented; coverage and prior authorization are decided by the payer",
        "default": True,
    }
]


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    policy_id: str
    title: str
    orders: frozenset[OrderCode]
    prefetch: dict[str, str]

    def describe(self) -> dict[str, Any]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": f"{self.title} ({self.hook})",
            "description": (
                f"Criteria of {self.title} for orders coded "
                + ", ".join(f"{o.system}|{o.code}" for o in sorted(self.orders, key=lambda o: (o.system, o.code)))
                + ": which are met, not met or not documented. Criteria only: never a coverage decision."
            ),
            "prefetch": self.prefetch,
            "extension": {
                "davinci-crd.configuration-options": CONFIGURATION_OPTIONS,
                "davinci-crd.version": list(CRD_VERSIONS),
            },
        }


def services(catalog: Catalog) -> dict[str, Service]:
    """Every service by id, in catalogue order; a policy's order codes are those of all its versions."""
    found: dict[str, Service] = {}
    prefetch = prefetch_templates(catalog.dictionary)
    for policy_id, versions in catalog.versions.items():
        orders = frozenset(code for version in versions for code in version.orders)
        if not orders:
            continue
        for hook in HOOKS:
            service = Service(f"{policy_id}-{hook}", hook, policy_id, versions[-1].title, orders, prefetch)
            found[service.id] = service
    return found
