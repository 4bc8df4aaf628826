"""Faults: the database going away or turning read-only (503, nothing half-written, recovery once it
is back), and start-up refusals (a malformed rule file, an unreachable database)."""

import json
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.engine import make_url

from service.app import create_app
from service.store.keys import create_key
from service.settings import Settings
from service.store.database import Database
from service.store.evaluations import RESULT_COLUMNS, result_text
from service.store.tables import Evaluation
from servers import ROOT, WAIT_SECONDS, free_port, serve_command
from tcp_proxy import TcpProxy

POLICY_FILE = Path("isass-2023-restorative-neurostimulation") / "1.0.0" / "policy.yaml"
UNAVAILABLE = "The database is unavailable, so the request was not carried out and nothing was stored. Try again shortly."


def post(client, key, external_id, case):
    return client.post("/v1/evaluations", json={**case, "external_id": external_id}, headers={"X-API-Key": key})


def assert_unavailable(response):
    assert response.status_code == 503
    assert response.json() == {"detail": UNAVAILABLE}
    assert int(response.headers["retry-after"]) > 0


def stored_rows(database, prefix):
    with database.session() as session:
        rows = session.execute(
            select(Evaluation.id, Evaluation.external_id, *RESULT_COLUMNS).where(
                Evaluation.external_id.startswith(prefix)
            )
        )
        return {row[0]: (row[1], result_text(*row[2:])) for row in rows}


@pytest.fixture
def proxied_postgres(postgres_url):
    """The session's PostgreSQL database, migrated, reached through a proxy the test controls."""
    direct = Database(postgres_url)
    direct.migrate()
    url = make_url(postgres_url)
    proxy = TcpProxy((url.host, url.port or 5432))
    proxy.start()
    yield direct, proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.stop()
    direct.dispose()


def test_postgresql_going_away_gets_503_and_the_service_recovers(proxied_postgres, evaluator, tmp_path, full_case):
    direct, proxy, url = proxied_postgres
    _, key = create_key(direct, "intake")

    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=url), evaluator)) as client:
        before = post(client, key, "PG-DOWN-before", full_case)
        proxy.stop()
        during = [
            post(client, key, "PG-DOWN-during", full_case),
            client.get(before.headers["location"], headers={"X-API-Key": key}),
            client.get("/v1/policies", headers={"X-API-Key": key}),
        ]
        proxy.start()
        after = post(client, key, "PG-DOWN-after", full_case)
        fetched = client.get(before.headers["location"], headers={"X-API-Key": key})

    assert before.status_code == 201
    for response in during:
        assert_unavailable(response)
    assert after.status_code == 201
    assert fetched.content == before.content
    assert sorted(external_id for external_id, _ in stored_rows(direct, "PG-DOWN-").values()) == [
        "PG-DOWN-after",
        "PG-DOWN-before",
    ]


def test_connections_cut_while_idle_are_replaced_without_a_failed_request(proxied_postgres, evaluator, tmp_path,
                                                                         full_case):
    # No pre-ping: the key check finds the broken connection, empties the pool and tries again.
    direct, proxy, url = proxied_postgres
    _, key = create_key(direct, "intake")
    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=url), evaluator)) as client:
        before = post(client, key, "PG-IDLE-before", full_case)
        proxy.stop()  # every pooled connection is cut while nothing is in flight
        proxy.start()
        after = [post(client, key, f"PG-IDLE-after-{i}", full_case) for i in range(3)]
    assert before.status_code == 201
    assert [response.status_code for response in after] == [201, 201, 201]


def test_postgresql_going_away_under_load_loses_no_acknowledged_evaluation(
    proxied_postgres, evaluator, tmp_path, full_case, request
):
    """One outage in the middle of a steady load (ten with ``--long``)."""
    direct, proxy, url = proxied_postgres
    outages = 10 if request.config.getoption("--long") else 1
    _, key = create_key(direct, "intake")
    statuses: Counter[int] = Counter()
    acknowledged: dict[str, bytes] = {}
    lock = threading.Lock()
    done = threading.Event()

    def submit(client, worker):
        number = 0
        while not done.is_set():
            response = post(client, key, f"PG-LOAD-{worker}-{number}", full_case)
            with lock:
                statuses[response.status_code] += 1
                if response.status_code == 201:
                    acknowledged[response.json()["evaluation_id"]] = response.content
            number += 1

    def wait_for(status, count):
        deadline = time.monotonic() + WAIT_SECONDS
        while statuses[status] < count and time.monotonic() < deadline:
            time.sleep(0.01)

    with TestClient(create_app(Settings(data_dir=tmp_path, database_url=url), evaluator)) as client:
        with ThreadPoolExecutor(max_workers=8) as pool:
            load = [pool.submit(submit, client, worker) for worker in range(8)]
            wait_for(201, 20)
            for outage in range(1, outages + 1):
                proxy.stop()  # cuts connections in the middle of inserts and commits
                wait_for(503, 20 * outage)
                acknowledged_while_down = statuses[201]
                proxy.start()
                wait_for(201, acknowledged_while_down + 20)
            done.set()
            for worker in load:
                worker.result()

    assert set(statuses) == {201, 503}
    assert statuses[503] >= 20 * outages
    assert statuses[201] >= acknowledged_while_down + 20
    stored = stored_rows(direct, "PG-LOAD-")
    assert acknowledged.keys() <= stored.keys()
    for evaluation_id, content in acknowledged.items():
        assert stored[evaluation_id][1].encode() == content
    # A commit cut off before its answer may be stored without a 201; it is stored whole.
    for evaluation_id, (external_id, result_json) in stored.items():
        assert json.loads(result_json)["evaluation_id"] == evaluation_id
        assert json.loads(result_json)["external_id"] == external_id


def test_a_read_only_sqlite_database_gets_503_and_the_service_recovers(tmp_path, evaluator, full_case):
    """Every connection the service opens finds the database read-only, as it would if the file or
    its folder lost write permission (which root, running these tests here, would not notice):
    SQLite reports SQLITE_READONLY either way. What needs no record keeps working (the policies);
    writes answer 503, and so do reads of case data, which cannot be answered without their audit
    record (contract, "Audit trail": no case data leaves unrecorded)."""
    database = Database(f"sqlite:///{tmp_path / 'coverage-criteria.db'}")
    database.migrate()
    _, key = create_key(database, "intake")
    settings = Settings(data_dir=tmp_path, database_url=str(database.url))

    def open_read_only(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA query_only=ON")

    with TestClient(create_app(settings, evaluator)) as client:
        engine = client.app.state.database.engine
        before = post(client, key, "RO-before", full_case)
        event.listen(engine, "connect", open_read_only)
        engine.dispose()
        read = client.get(before.headers["location"], headers={"X-API-Key": key})
        policies = client.get("/v1/policies", headers={"X-API-Key": key})
        write = post(client, key, "RO-during", full_case)
        event.remove(engine, "connect", open_read_only)  # writable again; the service reconnects itself
        after = post(client, key, "RO-after", full_case)

    assert before.status_code == 201
    assert policies.status_code == 200
    assert read.status_code == 503 and read.headers["retry-after"] and "RO-before" not in read.text
    assert_unavailable(write)
    assert after.status_code == 201
    assert sorted(external_id for external_id, _ in stored_rows(database, "RO-").values()) == ["RO-after", "RO-before"]
    database.dispose()


def serve(env_changes: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    """``coverage-criteria serve`` expected to refuse to start; a hang fails the test."""
    env = {**os.environ, "COVERAGE_CRITERIA_DATA_DIR": str(tmp_path / "data"), **env_changes}
    return subprocess.run(
        serve_command("--port", str(free_port())),
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=WAIT_SECONDS,
    )


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda text: text + "\ncriteria: [unclosed\n", "cannot read YAML"),
        (lambda text: text.replace("low_back_pain.odi_percent", "low_back_pain.odi"), "unknown case field"),
    ],
    ids=["yaml-syntax", "unknown-field"],
)
def test_a_malformed_rule_file_stops_serve_naming_the_file_and_the_reason(tmp_path, damage, reason):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    broken = rules / POLICY_FILE
    broken.write_text(damage(broken.read_text(encoding="utf-8")), encoding="utf-8")

    done = serve({"COVERAGE_CRITERIA_RULES_DIR": str(rules)}, tmp_path)

    assert done.returncode == 2
    assert str(broken) in done.stderr
    assert reason in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_database_stops_serve_saying_so(tmp_path):
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing_listens_here"

    done = serve({"COVERAGE_CRITERIA_DATABASE_URL": url}, tmp_path)

    assert done.returncode == 1
    assert "cannot use the database" in done.stderr
    assert "Traceback" not in done.stderr
