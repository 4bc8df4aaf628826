"""Requests: every evaluation one organization submitted with one ``external_id`` under one
policy, as one prior-authorization request under review (shared/contract.md, "Requests, the work
queue and its clocks"). The faces call these functions; none of them commits a web request's
answer by itself except where it says so.

- ``ids``: request ids, a keyed hash of (organization, policy, external_id), known before storing;
- ``grouping``: a submission's request row (the CMS clocks, priority), the submitter's organization;
- ``queue``: the work queue (filters, paging), one request with its submissions and determinations;
- ``assignment``: a reviewer takes or releases a request;
- ``changes``: what a submission changed against the one before it;
- ``people``: how a key is named where people read it.
"""
