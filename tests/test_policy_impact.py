"""``coverage-criteria rules impact``: replaying stored evaluations under a candidate version.

The known answer: stored cases with NRS values around the ISASS-RN-04 threshold (6), replayed
under a candidate whose threshold is 7, must report exactly the cases with 6 <= NRS < 7 as moved.
Runs on SQLite and PostgreSQL (the ``database`` fixture of tests/api_fixtures.py).
"""

from __future__ import annotations

import copy
import datetime
import fcntl
import json
import os
import pty
import struct
import termios
import subprocess
import sys

import pytest
from sqlalchemy import select, update

from candidates import ISASS, ROOT, candidate
from conftest import FULL_CASE
from service.cli import main
from service.audit.events import audit_event, event
from service.store.audit import AuditFilter, list_audit_records
from service.store.database import Database
from service.store.evaluations import save_evaluation
from service.store.tables import Evaluation
from service.store.keys import create_key

NRS_VALUES = [0, 3, 5.9, 5.99, 6, 6.0, 6.5, 6.99, 7, 7.5, 10]
MOVED = {6, 6.0, 6.5, 6.99}


def store(db: Database, evaluator, key_id: str, payload: dict) -> dict:
    """Evaluate and store a case as the API does (the case as sent, the result as returned)."""
    result = evaluator.evaluate(payload)
    save_evaluation(db, evaluation_id=result["evaluation_id"], external_id=result["external_id"],
                    policy_id=result["policy"]["id"], policy_version=result["policy"]["version"],
                    key_id=key_id, organization="default", case_json=json.dumps(payload), result_json=json.dumps(result))
    return result


@pytest.fixture
def stored(database, evaluator) -> dict[str, dict]:
    """Cases stored under ISASS 1.0.0: by external id, the case and its result."""
    key_id = create_key(database, "intake", label="impact tests")[0]
    cases = {}
    for index, nrs in enumerate(NRS_VALUES):
        full = copy.deepcopy(FULL_CASE)
        full.update(external_id=f"FULL-{index}")
        full["low_back_pain"]["nrs"] = nrs
        # the same NRS in a case whose ODI is too low: the outcome stays criteria_not_met
        low_odi = copy.deepcopy(full)
        low_odi.update(external_id=f"LOW-ODI-{index}")
        low_odi["low_back_pain"]["odi_percent"] = 10
        cases[full["external_id"]] = full
        cases[low_odi["external_id"]] = low_odi
    no_nrs = copy.deepcopy(FULL_CASE)
    no_nrs.update(external_id="NO-NRS")
    del no_nrs["low_back_pain"]["nrs"]
    del no_nrs["policy"]  # stored under the default policy
    del no_nrs["service_date"]  # replayed for the day it was evaluated
    cases["NO-NRS"] = no_nrs
    return {external_id: {"case": case, "result": store(database, evaluator, key_id, case)}
            for external_id, case in cases.items()}


@pytest.fixture
def nrs_7(tmp_path):
    return candidate(tmp_path / "candidate", {"{field: low_back_pain.nrs, at_least: 6}":
                                              "{field: low_back_pain.nrs, at_least: 7}"})


def impact(capsys, monkeypatch, database_url: str, *args) -> tuple[int, str, str]:
    monkeypatch.setenv("COVERAGE_CRITERIA_DATABASE_URL", database_url)
    status = main(["rules", "impact", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def rows(db: Database) -> list[tuple]:
    with db.session() as session:
        return [tuple(r) for r in session.execute(select(Evaluation.__table__).order_by(Evaluation.id))]


def test_a_changed_threshold_reports_exactly_the_cases_it_moves(database, database_url, stored, nrs_7,
                                                                 capsys, monkeypatch):
    before = rows(database)
    status, out, err = impact(capsys, monkeypatch, database_url, nrs_7, "--json")
    assert status == 0, err
    report = json.loads(out)
    moved = {external_id for external_id, s in stored.items() if s["case"]["low_back_pain"].get("nrs") in MOVED}
    assert len(moved) == 8
    assert report == {
        "policy": ISASS,
        "candidate_version": "1.1.0",
        "evaluations": len(stored),
        "changed": 8,
        "outcomes": {"all_criteria_met -> criteria_not_met": 4},
        "criteria": {"ISASS-RN-04": {"met -> not_met": 8}},
        "flags": {},
        "changed_evaluations": report["changed_evaluations"],
        "not_replayed": [],
    }
    changed = {c["external_id"]: c for c in report["changed_evaluations"]}
    assert set(changed) == moved
    for external_id, entry in changed.items():
        assert entry["evaluation_id"] == stored[external_id]["result"]["evaluation_id"]
        assert entry["criteria"] == {"ISASS-RN-04": "met -> not_met"}
        assert entry["outcome"] == ("all_criteria_met -> criteria_not_met" if external_id.startswith("FULL")
                                    else "criteria_not_met")
    assert rows(database) == before, "impact must not write evaluations"


def test_each_run_leaves_one_export_record_naming_the_operator(database, database_url, stored, nrs_7,
                                                               capsys, monkeypatch):
    """The report lists evaluations of every organization: an export of case data, recorded in
    the audit trail (contract, "Audit trail") by whoever ran it, with no API key."""
    monkeypatch.setattr("getpass.getuser", lambda: "ops-anna")
    status, _, err = impact(capsys, monkeypatch, database_url, nrs_7, "--json")
    assert status == 0, err
    page = list_audit_records(database, AuditFilter(), 10, None)
    exports = [r for r in page.results if r["action"] == "export"]
    assert len(exports) == 1
    record = exports[0]
    assert (record["resource"], record["resource_id"], record["status"], record["organization"]) == \
        ("evaluation", None, 200, None)
    assert event(record)["actor"] == {"key_id": None, "name": "ops-anna (command line)", "role": "operator"}
    agent = audit_event(record)["agent"][0]
    assert agent["who"] == {"display": "ops-anna (command line)"}
    assert agent["role"] == [{"text": "operator at the command line"}]
    assert "FULL-" not in json.dumps(record, default=str)  # ids of the trail, never case values


def test_the_report_is_withheld_when_its_export_cannot_be_recorded(database, database_url, stored, nrs_7,
                                                                    capsys, monkeypatch):
    with database.engine.begin() as connection:  # an audit trail that cannot take a record
        connection.exec_driver_sql("DROP TABLE audit_events")
    status, out, err = impact(capsys, monkeypatch, database_url, nrs_7, "--json")
    assert status == 1
    assert out == ""
    assert "could not record this export" in err and "withheld" in err


def test_the_report_for_people(database, database_url, stored, nrs_7, capsys, monkeypatch):
    status, out, _ = impact(capsys, monkeypatch, database_url, nrs_7)
    assert status == 0
    lines = out.splitlines()
    assert lines[:7] == [
        f"{ISASS}: candidate version 1.1.0",
        f"  {len(stored)} stored evaluations replayed, 8 changed",
        "  Outcomes:",
        "    all_criteria_met -> criteria_not_met: 4",
        "  Criteria:",
        "    ISASS-RN-04: met -> not_met: 8",
        "  Changed evaluations:",
    ]
    assert len(lines) == 15
    assert (f"    {stored['FULL-4']['result']['evaluation_id']}  FULL-4  all_criteria_met -> criteria_not_met"
            "  (ISASS-RN-04 met -> not_met)") in lines[7:]
    assert (f"    {stored['LOW-ODI-4']['result']['evaluation_id']}  LOW-ODI-4  criteria_not_met"
            "  (ISASS-RN-04 met -> not_met)") in lines[7:]


def test_an_unchanged_candidate_changes_nothing(database, database_url, stored, tmp_path, capsys, monkeypatch):
    same = candidate(tmp_path / "same", {})
    status, out, _ = impact(capsys, monkeypatch, database_url, same, "--json", "--policy", ISASS)
    assert status == 0
    report = json.loads(out)
    assert (report["evaluations"], report["changed"], report["changed_evaluations"]) == (len(stored), 0, [])


def test_since_and_until_select_by_the_day_stored(database, database_url, stored, nrs_7, capsys, monkeypatch):
    moved_early = ["FULL-4", "LOW-ODI-4"]  # NRS 6: stored "on 2026-01-10", the others on 2026-03-01
    with database.write() as connection:
        connection.execute(update(Evaluation).values(
            created_at=datetime.datetime(2026, 3, 1, 12, tzinfo=datetime.UTC)))
        connection.execute(update(Evaluation).where(Evaluation.external_id.in_(moved_early)).values(
            created_at=datetime.datetime(2026, 1, 10, 23, 59, tzinfo=datetime.UTC)))
    _, out, _ = impact(capsys, monkeypatch, database_url, nrs_7, "--json", "--until", "2026-01-10")
    report = json.loads(out)
    assert (report["evaluations"], report["changed"]) == (2, 2)
    _, out, _ = impact(capsys, monkeypatch, database_url, nrs_7, "--json", "--since", "2026-01-11")
    report = json.loads(out)
    assert (report["evaluations"], report["changed"]) == (len(stored) - 2, 6)
    _, out, _ = impact(capsys, monkeypatch, database_url, nrs_7, "--json", "--since", "2026-03-02")
    assert json.loads(out)["evaluations"] == 0


def test_workers_give_the_same_report(database, database_url, stored, nrs_7, capsys, monkeypatch):
    _, one, _ = impact(capsys, monkeypatch, database_url, nrs_7, "--json")
    _, two, _ = impact(capsys, monkeypatch, database_url, nrs_7, "--json", "--workers", "2")
    assert json.loads(two) == json.loads(one)


def test_a_stored_case_that_no_longer_validates_is_listed_not_replayed(database, database_url, stored, nrs_7,
                                                                        capsys, monkeypatch):
    broken = stored["FULL-0"]["result"]["evaluation_id"]
    with database.write() as connection:
        connection.execute(update(Evaluation).where(Evaluation.id == broken).values(
            case_json='{"external_id": "FULL-0", "patient": {"age_years": "52"}}'))
    _, out, _ = impact(capsys, monkeypatch, database_url, nrs_7, "--json")
    report = json.loads(out)
    assert report["evaluations"] == len(stored) - 1
    assert report["not_replayed"] == [{"evaluation_id": broken, "external_id": "FULL-0",
                                       "problem": "patient.age_years: Input should be a valid integer"}]


def test_a_candidate_that_does_not_load_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    bad = candidate(tmp_path / "bad", {"at_least: 6}": "at_least: six}"})
    never = tmp_path / "never" / "coverage-criteria.db"
    status, out, err = impact(capsys, monkeypatch, f"sqlite:///{never}", bad)
    assert status == 2
    assert out == ""
    assert "invalid rules:" in err and "ISASS-RN-04: met_when: low_back_pain.nrs is a number, not 'six'" in err
    assert not never.parent.exists(), "the database must not be opened"


def test_an_unknown_policy_is_refused(database, database_url, nrs_7, capsys, monkeypatch):
    status, _, err = impact(capsys, monkeypatch, database_url, nrs_7, "--policy", "acme")
    assert status == 2
    assert "the candidate folder has no policy 'acme'" in err


def test_a_progress_bar_on_a_terminal_only(database, database_url, stored, nrs_7, tmp_path):
    env = {**os.environ, "COVERAGE_CRITERIA_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "service.cli", "rules", "impact", str(nrs_7), "--json"]
    piped = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert piped.returncode == 0 and piped.stderr == ""
    # the same command with standard error on a terminal
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=follower, env=env, cwd=ROOT) as process:
        os.close(follower)
        out = process.stdout.read()
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            terminal += chunk
    os.close(leader)
    assert process.returncode == 0
    assert json.loads(out)["changed"] == 8
    assert b"evaluations" in terminal and b"%" in terminal, terminal
