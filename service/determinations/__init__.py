"""Determinations: the reviewer decides, the service records (shared/contract.md,
"Determinations" and "Audit trail and metrics"). Nothing but a reviewer's request creates one.

- ``record``: record a determination (the latest-submission check, attestation, the denial rules,
  amendments, closing the request), list a request's, a request's latest closing one (PAS);
- ``metrics``: the CMS-0057-F figures from the records, as JSON and CSV.
"""
