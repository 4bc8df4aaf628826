"""Da Vinci DTR (Documentation Templates and Rules): questionnaire packages whose answers the
EHR pre-fills from the chart with CQL, and the answers coming back (shared/contract.md, "Da
Vinci PAS and DTR").

- ``expr``: a small expression tree, the one source of both renderings;
- ``cql`` / ``elm``: the tree as CQL 1.5 text / as ELM JSON (what CQL engines execute);
- ``common``: what every library shares (the service date, date helpers, responses' items);
- ``prefill``: the ``fhir:`` declarations of ``rules/fields.yaml`` as one ``define`` per field;
- ``library``: a policy's Library (both contents) and the ValueSets its retrieves use;
- ``package``: the DTR Questionnaire and the ``$questionnaire-package`` Bundle;
- ``responses``: a DTR QuestionnaireResponse read into an evaluation's case.
"""
