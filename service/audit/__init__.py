"""The audit trail: every access to case data recorded once, append-only, and read back by
auditors (contract, "Audit trail and metrics").

- ``record``: one request's record in the making (:class:`Access`: action, resource, id), who
  made it (:class:`Actor`), and the rows that store it, with the request's own write or alone;
- ``events``: stored records as the API shows them, and as FHIR R4 AuditEvents.

The table is ``store/audit.py``; a route is audited by declaring ``service.web.audit.audited``
(one line), which has its record written exactly once, with the response's status.
"""
