"""FHIR R4 intake and questionnaires (shared/contract.md, "FHIR R4 intake").

Separated as HAPI FHIR separates them, each stage knowing only its neighbour:

- ``parse``: JSON -> resources, and validation of the resources the engine reads (fhir.resources R4B);
- ``sources``: the ``fhir:`` declarations of ``rules/fields.yaml`` (how each field is read), checked at load;
- ``readers``: one reader per kind of source, resource -> candidate value with its date;
- ``intake``: resources or a Bundle -> the plain JSON case, with the provenance of every value;
- ``evaluation``: a Bundle's evaluation, shared by the API and the CLI (case errors as OperationOutcomes);
- ``questionnaire``: SDC Questionnaires built from the field dictionary;
- ``outcome``: OperationOutcome, the shape of every error a FHIR client gets.
"""
