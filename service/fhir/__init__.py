"""FHIR R4 intake and questionnaires (shared/contract.md, "FHIR R4 intake"): an adapter above the
policy model, mapping FHIR into the case it defines.

Separated as HAPI FHIR separates them, each stage knowing only its neighbour:

- ``parse``: JSON -> resources, and validation of the resources the engine reads (fhir.resources R4B);
- ``readers``: one reader per kind of source (``service.policy.sources``), resource -> candidate value with its date;
- ``intake``: resources or a Bundle -> the plain JSON case, with the provenance of every value;
- ``answers``: QuestionnaireResponse items read by linkId (information-origin, range, authored);
- ``questionnaire``: SDC Questionnaires built from the field dictionary;
- ``dtr``: Da Vinci DTR packages, their CQL and ELM generated from the ``fhir:`` declarations;
- ``outcome``: OperationOutcome, the shape of every error a FHIR client gets.

A Bundle's evaluation (intake, then the engine) is ``service.evaluations.bundle``, above both.
"""
