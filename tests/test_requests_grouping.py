"""Requests (issue 18, item 1): the first submission of an external_id by an organization under a
policy opens a request, later ones resubmit it, whichever way they come; CDS Hooks answers open
none; each result names its request as it is first returned; the CMS-0057-F clocks."""

from __future__ import annotations

import datetime
import threading

import pytest
from sqlalchemy import func, select

from cds_client import reactiv8_order
from cds_support import actions_of, cds, fhir_servers, hook, signer  # noqa: F401
from crd_invariants import coverage_informations, values
from fhir_support import bundle, nrs, order, patient
from requests_support import case, request_row, submit
from service.evaluations.submit import evaluate_and_store
from service.store.database import Database
from service.store.idempotency import IdempotencyClaim
from service.store.keys import create_key
from service.requests.grouping import DueClock
from service.settings import Settings
from service.store.requests import Request
from service.store.tables import Evaluation, as_utc
from test_cds_hooks import minimal_request


def database_key(database) -> str:
    return create_key(database, "intake")[0]


def intake(database, organization: str = "default") -> str:
    return create_key(database, "intake", organization=organization)[1]


def test_the_first_submission_opens_a_request_and_later_ones_resubmit_it(client, intake_key, database):
    first = submit(client, intake_key, case("INTAKE-1"))
    second = submit(client, intake_key, case("INTAKE-1", nrs=3))
    other = submit(client, intake_key, case("INTAKE-2"))

    assert first["request_id"] == second["request_id"] != other["request_id"]
    row = request_row(database, first["request_id"])
    assert (row.external_id, row.submissions, row.state, row.priority) == ("INTAKE-1", 2, "open", "standard")
    assert row.latest_evaluation_id == second["evaluation_id"]
    assert row.latest_outcome == "criteria_not_met"
    assert as_utc(row.due_at) - as_utc(row.received_at) == datetime.timedelta(days=7)


def test_the_result_names_its_request_as_first_returned_and_as_stored(client, intake_key):
    answer = client.post("/v1/evaluations", json=case("INTAKE-1"), headers={"X-API-Key": intake_key})

    result = answer.json()
    assert list(result)[:3] == ["evaluation_id", "external_id", "request_id"]
    stored = client.get(f"/v1/evaluations/{result['evaluation_id']}", headers={"X-API-Key": intake_key})
    assert stored.content == answer.content


def test_a_policy_is_part_of_the_request_s_identity(client, intake_key, evaluator):
    other_policy = next(p for p in evaluator.catalog.versions if p != "isass-2023-restorative-neurostimulation")
    isass = submit(client, intake_key, case("INTAKE-1"))
    other = submit(client, intake_key, {"external_id": "INTAKE-1", "policy": other_policy, "service_date": "2026-12-01"})

    assert isass["request_id"] != other["request_id"]


def test_the_same_reference_from_two_organizations_is_two_requests(database, evaluator):
    key_id = database_key(database)
    one, _ = evaluate_and_store(evaluator, database, case("INTAKE-1"), key_id, organization="north")
    two, _ = evaluate_and_store(evaluator, database, case("INTAKE-1"), key_id, organization="south")

    with database.session() as session:
        owners = dict(session.execute(select(Evaluation.id, Evaluation.request_id)).all())
        organizations = session.scalars(select(Request.organization).order_by(Request.organization)).all()
    assert owners[one] != owners[two]
    assert organizations == ["north", "south"]


def test_a_fhir_bundle_and_an_idempotent_retry_join_the_same_request(client, intake_key, database):
    headers = {"X-API-Key": intake_key, "Content-Type": "application/fhir+json"}
    fhir = client.post("/v1/evaluations?service_date=2026-12-01", headers=headers,
                       content=__import__("json").dumps(bundle(patient(), order(), nrs(7), identifier="INTAKE-9")))
    assert fhir.status_code == 201, fhir.text
    retried = [submit(client, intake_key, case("INTAKE-9"), **{"Idempotency-Key": "k-1"}) for _ in range(2)]

    assert fhir.json()["request_id"] == retried[0]["request_id"] == retried[1]["request_id"]
    assert request_row(database, fhir.json()["request_id"]).submissions == 2  # the replay stored nothing


def test_a_cds_hooks_answer_opens_no_request(cds, database):  # noqa: F811
    actions = actions_of(hook(cds, minimal_request(reactiv8_order("r8-a"))))

    evaluation_id = values(coverage_informations(actions[0]["resource"])[0], "coverage-assertion-id")[0]
    with database.session() as session:
        assert session.scalar(select(Evaluation.request_id).where(Evaluation.id == evaluation_id)) is None
        assert session.scalar(select(func.count()).select_from(Request)) == 0
    # Read by an intake key of the EHR's organization (the CDS client's: its iss), whose evaluation it is.
    stored = cds.get(f"/v1/evaluations/{evaluation_id}", headers={"X-API-Key": intake(database, cds.signer.issuer)})
    assert stored.json()["request_id"] is None


def test_an_expedited_request_is_due_in_72_hours(client, intake_key, database):
    result = submit(client, intake_key, case("INTAKE-1", priority="expedited"))

    row = request_row(database, result["request_id"])
    assert row.priority == "expedited"
    assert as_utc(row.due_at) - as_utc(row.received_at) == datetime.timedelta(hours=72)


def test_an_unknown_priority_is_refused_naming_the_field(client, intake_key, database):
    answer = client.post("/v1/evaluations", json=case("INTAKE-1", priority="urgent"), headers={"X-API-Key": intake_key})

    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["priority"]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Request)) == 0


def test_the_clocks_are_configurable(database_url, tmp_path, evaluator, database, intake_key):
    from fastapi.testclient import TestClient

    from service.app import create_app

    settings = Settings(data_dir=tmp_path, database_url=database_url, due_hours_expedited=4, due_hours_standard=48)
    with TestClient(create_app(settings, evaluator)) as configured:
        standard = submit(configured, intake_key, case("INTAKE-1"))
        expedited = submit(configured, intake_key, case("INTAKE-2", priority="expedited"))
    for result, hours in ((standard, 48), (expedited, 4)):
        row = request_row(database, result["request_id"])
        assert as_utc(row.due_at) - as_utc(row.received_at) == datetime.timedelta(hours=hours)


def test_the_clocks_are_read_from_the_environment():
    clock = DueClock.from_env({"COVERAGE_CRITERIA_DUE_HOURS_EXPEDITED": "24", "COVERAGE_CRITERIA_DUE_HOURS_STANDARD": "336"})
    assert (clock.expedited_hours, clock.standard_hours) == (24, 336)
    with pytest.raises(ValueError, match="COVERAGE_CRITERIA_DUE_HOURS_EXPEDITED"):
        DueClock.from_env({"COVERAGE_CRITERIA_DUE_HOURS_EXPEDITED": "0"})


def test_a_resubmission_marked_expedited_speeds_the_request_up_and_never_down(client, intake_key, database):
    first = submit(client, intake_key, case("INTAKE-1"))
    received = as_utc(request_row(database, first["request_id"]).received_at)
    submit(client, intake_key, case("INTAKE-1", priority="expedited"))
    escalated = request_row(database, first["request_id"])
    submit(client, intake_key, case("INTAKE-1", priority="standard"))
    later = request_row(database, first["request_id"])

    assert escalated.priority == later.priority == "expedited"
    assert as_utc(escalated.received_at) == received
    assert datetime.timedelta(hours=71) < as_utc(escalated.due_at) - received <= datetime.timedelta(hours=73)
    assert later.due_at == escalated.due_at


@pytest.mark.parametrize("idempotent", [False, True], ids=["group commit", "own transactions"])
def test_first_submissions_made_at_once_open_one_request(database, evaluator, idempotent):
    """Eight first submissions at once, through two Database objects (two workers' writers and
    pools): one request, eight submissions, the newest its latest."""
    key_id = database_key(database)
    other_worker = Database(database.url.render_as_string(hide_password=False))
    barrier = threading.Barrier(8)
    errors = []

    def send(n: int) -> None:
        claim = IdempotencyClaim(key_id, f"k-{n}", f"{n:064x}") if idempotent else None
        barrier.wait()
        try:
            evaluate_and_store(evaluator, (database, other_worker)[n % 2], case("RACE-1", nrs=n % 10), key_id, claim,
                               organization="default")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other_worker.dispose()

    assert errors == []
    with database.session() as session:
        rows = session.execute(select(Request.id, Request.submissions, Request.latest_evaluation_id)).all()
        newest = session.scalar(select(Evaluation.id).order_by(Evaluation.created_at.desc(), Evaluation.id.desc()))
        grouped = session.scalar(select(func.count()).select_from(Evaluation).where(Evaluation.request_id == rows[0].id))
    assert len(rows) == 1
    assert rows[0].submissions == grouped == 8
    assert rows[0].latest_evaluation_id == newest
