"""A property of the whole service (issue 19, "Done when"): whatever sequence of submissions (REST
JSON, idempotent retries, FHIR Bundles), CDS Hooks calls, notes and determinations (good, stale,
malformed) arrives,

- no determination exists that a reviewer did not post (and get a 201 for);
- every closing denial or partial approval has a specific reason and criteria;
- each request's state follows its last closing determination and later submissions;
- no stored result carries an outcome of a determination, and CDS Hooks answers open no request.

PAS calls join the sequence once PAS exists on this branch's base (they store through the same path).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select

from cds_client import reactiv8_order
from cds_support import actions_of, cds, fhir_servers, hook, signer  # noqa: F401
from crd_invariants import coverage_informations, values
from fhir_support import bundle, nrs, order, patient
from requests_support import DENIAL_REASON, case
from service.store.determinations import CLOSING, Determination
from service.store.evaluations import RESULT_COLUMNS, result_text
from service.store.keys import create_key
from service.store.requests import Request
from service.store.tables import Evaluation
from test_cds_hooks import minimal_request
from test_determinations_record import _outcome_values

OUTCOMES = ("approved", "denied", "partially_approved", "pended_for_information", "referred_to_physician_reviewer")
NEEDS_REASON = ("denied", "partially_approved")
REFERENCES = 3

submissions = st.tuples(st.just("submit"), st.integers(0, REFERENCES - 1), st.integers(0, 10),
                        st.sampled_from([None, "standard", "expedited"]), st.sampled_from(["json", "retry", "fhir"]))
hooks = st.tuples(st.just("hook"))
notes = st.tuples(st.just("note"), st.integers(0, REFERENCES - 1), st.text(min_size=1, max_size=40).filter(str.strip))
determinations = st.tuples(
    st.just("determine"), st.integers(0, REFERENCES - 1), st.sampled_from(OUTCOMES),
    st.sampled_from(["latest", "latest", "latest", "stale"]), st.sampled_from(["specific", "short", "none"]),
    st.sampled_from(["known", "known", "none", "unknown"]), st.booleans() | st.just(True), st.booleans())
steps = st.lists(st.one_of(submissions, hooks, notes, determinations, determinations), min_size=1, max_size=18)


@dataclass
class Model:
    """What the service must hold: per reference, its submissions and whether it is decided."""

    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    submitted: dict[int, list[str]] = field(default_factory=dict)
    request_ids: dict[int, str] = field(default_factory=dict)
    decided: dict[int, bool] = field(default_factory=dict)
    posted: dict[int, list[str]] = field(default_factory=dict)
    determined: set[str] = field(default_factory=set)
    hook_evaluations: list[str] = field(default_factory=list)
    retries: int = 0


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sequence=steps)
def test_only_reviewers_decide_and_state_follows_the_record(cds, database, sequence):  # noqa: F811
    keys = {role: {"X-API-Key": create_key(database, role)[1]} for role in ("intake", "reviewer")}
    model = Model()
    for step in sequence:
        globals()[f"_{step[0]}"](cds, keys, model, *step[1:])
    _check(database, model)


def _submit(client, keys, model: Model, ref: int, pain: int, priority: str | None, how: str) -> None:
    reference = f"{model.prefix}-{ref}"
    body = case(reference, nrs=pain, **({"priority": priority} if priority else {}))
    if how == "fhir":
        answer = client.post("/v1/evaluations?service_date=2026-12-01", headers={
            **keys["intake"], "Content-Type": "application/fhir+json"},
            content=json.dumps(bundle(patient(), order(), nrs(pain), identifier=reference)))
    else:
        headers = {**keys["intake"], **({"Idempotency-Key": f"{reference}-{model.retries}"} if how == "retry" else {})}
        answer = client.post("/v1/evaluations", json=body, headers=headers)
        if how == "retry":  # the same request again: answered again, nothing new stored
            again = client.post("/v1/evaluations", json=body, headers=headers)
            assert again.status_code == 201 and again.content == answer.content
            model.retries += 1
    assert answer.status_code == 201, answer.text
    result = answer.json()
    model.submitted.setdefault(ref, []).append(result["evaluation_id"])
    assert model.request_ids.setdefault(ref, result["request_id"]) == result["request_id"]
    model.decided[ref] = False


def _hook(client, keys, model: Model) -> None:
    actions = actions_of(hook(client, minimal_request(reactiv8_order("r8-a"))))
    model.hook_evaluations.append(values(coverage_informations(actions[0]["resource"])[0], "coverage-assertion-id")[0])


def _note(client, keys, model: Model, ref: int, text: str) -> None:
    if ref not in model.submitted:
        return
    answer = client.post(f"/v1/evaluations/{model.submitted[ref][-1]}/notes", json={"criterion": None, "text": text},
                         headers=keys["reviewer"])
    assert answer.status_code in (201, 422), answer.text  # 422: a control character hypothesis chose


def _determine(client, keys, model: Model, ref: int, outcome: str, which: str, reason: str, criteria: str,
               attested: bool, amend: bool) -> None:
    if ref not in model.submitted:
        return
    evaluations = model.submitted[ref]
    stale = which == "stale" and len(evaluations) > 1
    body = {"evaluation_id": evaluations[0] if stale else evaluations[-1], "outcome": outcome, "attestation": attested,
            "reason": {"specific": DENIAL_REASON, "short": "Not met.", "none": None}[reason],
            "criteria": {"known": ["ISASS-RN-04"], "none": [], "unknown": ["NOT-A-CRITERION"]}[criteria]}
    if amend and model.posted.get(ref):
        body["amends"] = model.posted[ref][-1]
    answer = client.post(f"/v1/requests/{model.request_ids[ref]}/determinations", json=body, headers=keys["reviewer"])
    invalid = (not attested or criteria == "unknown"
               or (outcome in NEEDS_REASON and (reason != "specific" or criteria == "none")))
    expected = 422 if invalid else 409 if stale else 201
    assert answer.status_code == expected, (body, answer.text)
    if expected == 201:
        made = answer.json()
        model.posted.setdefault(ref, []).append(made["id"])
        model.determined.add(made["id"])
        model.decided[ref] = model.decided[ref] or outcome in CLOSING


def _check(database, model: Model) -> None:
    mine = [f"{model.prefix}-{ref}" for ref in range(REFERENCES)]
    with database.session() as session:
        requests = {r.external_id: r for r in session.scalars(select(Request).where(Request.external_id.in_(mine)))}
        stored = session.scalars(select(Determination).join(Request).where(Request.external_id.in_(mine))).all()
        results = session.execute(select(Evaluation.id, Evaluation.request_id, *RESULT_COLUMNS)
                                  .where(Evaluation.external_id.in_(mine) | Evaluation.id.in_(model.hook_evaluations))).all()
    assert {d.id for d in stored} == model.determined
    for determination in stored:
        if determination.outcome in NEEDS_REASON:
            assert len((determination.reason or "").strip()) >= 30 and json.loads(determination.criteria_json)
    assert sorted(requests) == sorted(f"{model.prefix}-{ref}" for ref in model.submitted)
    for ref, evaluations in model.submitted.items():
        request = requests[f"{model.prefix}-{ref}"]
        assert request.state == ("decided" if model.decided[ref] else "open")
        assert (request.id, request.submissions, request.latest_evaluation_id) == (
            model.request_ids[ref], len(evaluations), evaluations[-1])
    for evaluation_id, request_id, *stored in results:
        result = json.loads(result_text(*stored))
        assert not _outcome_values(result)
        assert (request_id is None) == (evaluation_id in model.hook_evaluations) == (result["request_id"] is None)
