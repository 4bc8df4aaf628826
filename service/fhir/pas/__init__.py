"""Da Vinci PAS (Prior Authorization Support): the request Bundle in, the PAS response Bundle out.

Pure mapping, no storage and no HTTP (the operations are in ``service/fhir_api/``):

- ``constants``: canonicals, extension URLs, X12 306 review actions, PAS 2.0.1 vs 2.2 in one table;
- ``bundle``: entries and how references between them resolve;
- ``request``: the request Bundle checked (one OperationOutcome, 400, when malformed) and read:
  external_id, items, priority, version;
- ``policy_choice``: the policy from the items' ``productOrService`` codes and the policies' ``orders:``;
- ``clinical``: the case, read from supportingInfo and what it references by ``service.fhir.intake``;
- ``response``: the pended response Bundle (A4), with the request for additional information;
- ``decision``: the reviewer's determination as a ClaimResponse (A1, A3, A6): the only source of those.
"""
