"""The CMS-0057-F figures (issue 19, item 4) over a fixture of requests and determinations whose
figures were worked out by hand (below), through the function, the API (JSON and CSV) and the
command line."""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import insert

from service.determinations.metrics import metrics
from service.engine.ids import new_id
from service.store.determinations import Determination
from service.store.keys import create_key
from service.store.requests import Request
from service.store.tables import Evaluation

UTC = datetime.UTC
MARCH = datetime.date(2026, 3, 1), datetime.date(2026, 3, 31)
NOW = datetime.datetime(2026, 4, 10, tzinfo=UTC)


def at(day: int, hour: float = 0, month: int = 3) -> datetime.datetime:
    return datetime.datetime(2026, month, day, tzinfo=UTC) + datetime.timedelta(hours=hour)


# (reference, priority, received, state now, [(outcome, hours after receipt)])
FIXTURE = [
    ("S1", "standard", at(1), "decided", [("approved", 24)]),
    ("S2", "standard", at(2), "decided", [("denied", 200)]),                       # late: 200 h > 168 h
    ("S3", "standard", at(3), "decided", [("denied", 48), ("approved", 60)]),      # counts as approved
    ("S4", "standard", at(4), "open", [("pended_for_information", 10)]),           # not determined
    ("S5", "standard", at(31, 12), "open", []),                                   # received on the last day
    ("S6", "standard", at(20), "open", [("partially_approved", 100)]),            # reopened by a resubmission
    ("E1", "expedited", at(5), "decided", [("approved", 10)]),
    ("E2", "expedited", at(6), "decided", [("denied", 80)]),                      # late: 80 h > 72 h
    ("E3", "expedited", at(7), "open", []),
    ("BEFORE", "standard", at(28, 23.99, month=2), "open", []),                   # outside the period
    ("AFTER", "expedited", at(1, month=4), "open", []),
]

# Worked out by hand from the fixture.
STANDARD = {
    "received": 6, "determined": {"approved": 2, "denied": 1, "partially_approved": 1},
    "percent_approved": 50.0, "percent_denied": 25.0,
    "mean_hours_to_determination": 93.0,          # (24 + 200 + 48 + 100) / 4
    "median_hours_to_determination": 74.0,        # (48 + 100) / 2
    "decided_late": 1, "open": 3, "overdue": 3,   # S4, S5, S6: all past due on 10 April
}
EXPEDITED = {
    "received": 3, "determined": {"approved": 1, "denied": 1, "partially_approved": 0},
    "percent_approved": 50.0, "percent_denied": 50.0,
    "mean_hours_to_determination": 45.0, "median_hours_to_determination": 45.0,
    "decided_late": 1, "open": 1, "overdue": 1,
}
OVERALL = {
    "received": 9, "determined": {"approved": 3, "denied": 2, "partially_approved": 1},
    "percent_approved": 50.0, "percent_denied": 33.3,
    "mean_hours_to_determination": 77.0,          # 462 / 6
    "median_hours_to_determination": 64.0,        # (48 + 80) / 2
    "decided_late": 2, "open": 4, "overdue": 4,
}
EXPECTED = {"from": "2026-03-01", "to": "2026-03-31", "overall": OVERALL,
            "by_priority": {"standard": STANDARD, "expedited": EXPEDITED}}


@pytest.fixture
def recorded(database):
    key_id = create_key(database, "reviewer", label="Nurse Ann")[0]
    requests, evaluations, determinations = [], [], []
    for reference, priority, received, state, decisions in FIXTURE:
        request_id, evaluation_id = new_id(), new_id()
        due = received + datetime.timedelta(hours=72 if priority == "expedited" else 168)
        requests.append({"id": request_id, "organization": "default", "external_id": reference,
                         "external_id_folded": reference.casefold(), "policy_id": "p", "priority": priority,
                         "received_at": received, "due_at": due, "state": state, "submissions": 1,
                         "latest_evaluation_id": evaluation_id, "latest_outcome": "criteria_not_met",
                         "latest_at": received})
        evaluations.append({"id": evaluation_id, "external_id": reference, "policy_id": "p", "policy_version": "1",
                            "key_id": key_id, "case_json": "{}", "result_json": "{}", "created_at": received,
                            "request_id": request_id})
        for outcome, hours in decisions:
            determinations.append({
                "id": new_id(), "request_id": request_id, "evaluation_id": evaluation_id, "outcome": outcome,
                "reason": "A specific reason of at least thirty characters.", "criteria_json": '["X-1"]',
                "attestation": True, "amends": None, "reviewer_key_id": key_id, "reviewer_name": "Nurse Ann",
                "recorded_at": received + datetime.timedelta(hours=hours)})
    with database.write() as connection:
        connection.execute(insert(Request), requests)
        connection.execute(insert(Evaluation), evaluations)
        connection.execute(insert(Determination), determinations)
    return database


def test_the_figures_equal_those_worked_out_by_hand(recorded):
    assert metrics(recorded, *MARCH, now=NOW) == EXPECTED


def test_a_period_without_requests_has_no_rates(recorded):
    empty = metrics(recorded, datetime.date(2025, 1, 1), datetime.date(2025, 1, 31), now=NOW)["overall"]
    assert empty == {"received": 0, "determined": {"approved": 0, "denied": 0, "partially_approved": 0},
                     "percent_approved": None, "percent_denied": None, "mean_hours_to_determination": None,
                     "median_hours_to_determination": None, "decided_late": 0, "open": 0, "overdue": 0}


def test_the_api_gives_them_as_json_and_as_csv(client, recorded, reviewer_key):
    headers = {"X-API-Key": reviewer_key}
    assert client.get("/v1/metrics?from=2026-03-01&to=2026-03-31", headers=headers).json() == EXPECTED

    answer = client.get("/v1/metrics?from=2026-03-01&to=2026-03-31", headers={**headers, "Accept": "text/csv"})
    assert answer.headers["content-type"].startswith("text/csv")
    assert _from_csv(answer.text) == EXPECTED


@pytest.mark.parametrize("query, field", [("from=2026-03-01", "query.to"), ("from=2026-3-1&to=2026-03-31", "query.from"),
                                          ("from=2026-02-30&to=2026-03-31", "query.from"),
                                          ("from=2026-03-31&to=2026-03-01", "query.to")])
def test_a_bad_period_is_refused_naming_the_parameter(client, reviewer_key, query, field):
    answer = client.get(f"/v1/metrics?{query}", headers={"X-API-Key": reviewer_key})

    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_the_metrics_are_not_for_intake_keys(client, intake_key):
    assert client.get("/v1/metrics?from=2026-03-01&to=2026-03-31", headers={"X-API-Key": intake_key}).status_code == 403


def test_the_command_prints_them_as_csv_and_as_json(recorded, database_url, tmp_path):
    env = {**os.environ, "COVERAGE_CRITERIA_DATABASE_URL": database_url, "COVERAGE_CRITERIA_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "service.cli", "metrics", "--from", "2026-03-01", "--to", "2026-03-31"]

    as_json = subprocess.run([*command, "--json"], capture_output=True, text=True, env=env, timeout=120)
    as_csv = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    backwards = subprocess.run([*command[:4], "2026-03-31", "--to", "2026-03-01"], capture_output=True, text=True,
                               env=env, timeout=120)

    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == EXPECTED
    assert _from_csv(as_csv.stdout) == EXPECTED
    assert backwards.returncode == 2 and "--to" in backwards.stderr


def _from_csv(text: str) -> dict:
    """The CSV read back into the JSON shape (numbers as numbers, empty cells as null)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["scope"] for row in rows] == ["overall", "standard", "expedited"]

    def figures(row: dict) -> dict:
        number = {k: (None if v == "" else float(v) if "." in v else int(v)) for k, v in row.items()
                  if k not in ("scope", "from", "to")}
        outcomes = ("approved", "denied", "partially_approved")
        return {"received": number["received"], "determined": {o: number[o] for o in outcomes},
                **{k: v for k, v in number.items() if k not in ("received", *outcomes)}}

    by_scope = {row["scope"]: figures(row) for row in rows}
    return {"from": rows[0]["from"], "to": rows[0]["to"], "overall": by_scope["overall"],
            "by_priority": {"standard": by_scope["standard"], "expedited": by_scope["expedited"]}}


def test_the_widest_period_is_answered(recorded):
    widest = metrics(recorded, datetime.date.min, datetime.date.max, now=NOW)
    assert widest["overall"]["received"] == len(FIXTURE)
