"""The work queue's first page with many requests stored; print JSON figures.

    python bench/queue_page.py [--requests 100000] [--backends sqlite postgresql] [--repeat 7]

For each backend it makes a fresh database (SQLite: a temporary file; PostgreSQL: a database it
creates on 127.0.0.1:5432, or ``COVERAGE_CRITERIA_BENCH_POSTGRES_URL``, and drops; skipped when
unreachable), migrates it, and loads ``--requests`` requests straight into the table as the
service would have written them: 10 % expedited, three policies, received over the last 30 days,
a third decided, one in eight assigned to one of five reviewers, each with one stored evaluation
and the decided ones with a determination. PostgreSQL's statistics are refreshed (ANALYZE, as
autovacuum would after such a load); SQLite's are left as a fresh file has them (none).

Then it asks for the first page (50) of each queue a reviewer uses, ``--repeat`` times, through
the real app (``GET /v1/requests`` with a reviewer key, in process: the figure is server time,
routing, key check, query, JSON), and reports the median and the slowest in milliseconds, and the
same for the second page (the cursor). The goal (issue 18): under 150 ms.

(Not ``bench/queue.py``: run as a script, a file's folder is first on the import path, and a
``queue.py`` there stood in for the standard library's ``queue`` in every script of bench/.)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from service.app import create_app  # noqa: E402
from service.engine.ids import new_id  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.store.database import Database  # noqa: E402
from service.store.determinations import Determination  # noqa: E402
from service.store.keys import create_key  # noqa: E402
from service.store.requests import Request  # noqa: E402
from service.store.tables import Evaluation  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get("COVERAGE_CRITERIA_BENCH_POSTGRES_URL",
                                    "postgresql://postgres@127.0.0.1:5432/postgres")
POLICIES = ("isass-2023-restorative-neurostimulation", "mp-623-restorative-neurostimulation", "other-policy")
QUEUES = {
    "open (default)": "",
    "all states": "state=all",
    "decided": "state=decided",
    "expedited": "priority=expedited",
    "one policy": f"policy={POLICIES[2]}",
    "mine": "assigned=me",
    "unassigned": "assigned=none",
    "overdue": "overdue=true",
    "reference prefix": "external_id=int-00012",
    "reference prefix of every one": "external_id=i",
    "mine, overdue": "assigned=me&overdue=true",
    "expedited, one policy, unassigned": f"priority=expedited&policy={POLICIES[1]}&assigned=none",
}
CHUNK = 5000


def load(db: Database, count: int, reviewers: list[str], intake_key_id: str) -> float:
    started = time.perf_counter()
    now = datetime.datetime.now(datetime.UTC)
    result_json = json.dumps({"summary": {"outcome": "information_missing"}, "evaluated_at": "2026-12-01T00:00:00Z"})
    for start in range(0, count, CHUNK):
        requests, evaluations, determinations = [], [], []
        for n in range(start, min(start + CHUNK, count)):
            expedited = n % 10 == 0
            received = now - datetime.timedelta(minutes=(n * 7919) % (30 * 24 * 60))
            decided = n % 3 == 0
            request_id, evaluation_id = new_id(), new_id()
            external_id = f"INT-{n:07d}"
            requests.append({
                "id": request_id, "organization": "default", "external_id": external_id,
                "external_id_folded": external_id.casefold(), "policy_id": POLICIES[n % 3],
                "priority": "expedited" if expedited else "standard", "received_at": received,
                "due_at": received + datetime.timedelta(hours=72 if expedited else 168),
                "state": "decided" if decided else "open", "submissions": 1, "latest_evaluation_id": evaluation_id,
                "latest_outcome": "information_missing", "latest_at": received,
                "assigned_key_id": reviewers[n % 5] if n % 8 == 0 else None,
                "assigned_at": received if n % 8 == 0 else None,
            })
            evaluations.append({
                "id": evaluation_id, "external_id": external_id, "policy_id": POLICIES[n % 3], "policy_version": "1.0.0",
                "key_id": intake_key_id, "case_json": "{}", "result_json": result_json, "created_at": received,
                "request_id": request_id,
            })
            if decided:
                determinations.append({
                    "id": new_id(), "request_id": request_id, "evaluation_id": evaluation_id, "outcome": "approved",
                    "reason": None, "criteria_json": "[]", "attestation": True, "amends": None,
                    "reviewer_key_id": reviewers[n % 5], "reviewer_name": "Reviewer",
                    "recorded_at": received + datetime.timedelta(hours=20),
                })
        with db.write() as connection:
            connection.execute(insert(Request), requests)
            connection.execute(insert(Evaluation), evaluations)
            connection.execute(insert(Determination), determinations)
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))
    return time.perf_counter() - started


def measure(url: str, count: int, repeat: int, tmp: Path) -> dict:
    db = Database(url)
    db.migrate()
    reviewers = [create_key(db, "reviewer", label=f"Reviewer {n}")[0] for n in range(4)]
    viewer_id, viewer = create_key(db, "reviewer", label="Bench reviewer")
    intake_key_id = create_key(db, "intake")[0]
    seconds = load(db, count, [*reviewers, viewer_id], intake_key_id)
    db.dispose()
    figures = {}
    with TestClient(create_app(Settings(data_dir=tmp, database_url=url, rate_limit_per_minute=0))) as client:
        headers = {"X-API-Key": viewer}
        for name, query in QUEUES.items():
            first, second, rows = [], [], 0
            for _ in range(repeat):
                started = time.perf_counter()
                answer = client.get(f"/v1/requests?{query}", headers=headers)
                first.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text
                page = answer.json()
                rows = len(page["requests"])
                if page["next_cursor"]:
                    started = time.perf_counter()
                    again = client.get(f"/v1/requests?{query}&cursor={page['next_cursor']}", headers=headers)
                    second.append((time.perf_counter() - started) * 1000)
                    assert again.status_code == 200, again.text
            figures[name] = {
                "query": query, "rows_on_first_page": rows,
                "first_page_ms": {"median": round(statistics.median(first), 1), "max": round(max(first), 1)},
                "second_page_ms": ({"median": round(statistics.median(second), 1), "max": round(max(second), 1)}
                                   if second else None),
            }
    return {"requests": count, "load_seconds": round(seconds, 1), "queues": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    report = {"benchmark": "queue", "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "runs": {}}
    for backend in args.backends:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            if backend == "sqlite":
                report["runs"]["sqlite"] = measure(f"sqlite:///{tmp / 'queue.db'}", args.requests, args.repeat, tmp)
                continue
            try:
                admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
            except psycopg.OperationalError as error:
                report["runs"]["postgresql"] = {"skipped": f"unreachable: {error}"}
                continue
            name = f"coverage_criteria_queue_{secrets.token_hex(4)}"
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            try:
                url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
                report["runs"]["postgresql"] = measure(url, args.requests, args.repeat, tmp)
            finally:
                admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
                admin.close()
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
