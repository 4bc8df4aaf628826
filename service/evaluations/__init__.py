"""Evaluations made and stored, shared by every face (REST, CDS Hooks, the FHIR operations).

- ``submit``: evaluate a case (JSON or read from a FHIR Bundle) and store it;
- ``bundle``: evaluate a FHIR Bundle: read the case with ``service.fhir``, errors as OperationOutcomes.
"""
