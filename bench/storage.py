"""What storing and reading back an evaluation's row costs, on SQLite and PostgreSQL; print JSON figures.

    python bench/storage.py [--rows 4000] [--batch 32] [--backends sqlite postgresql]

Evaluates ``--rows`` of the shared bench cases (../shared/bench/cases-20000.json.gz; generated
ones where absent) once, then, in a fresh database per backend:

- ``write``: each evaluation made into its row as the service makes it (``evaluation_row``: the
  result as returned, the case as received) and committed by the group commit, ``--batch`` rows
  waiting at a time, as ``--batch`` requests in flight would leave them; CPU µs a row of this
  process (the writer thread included) and, for PostgreSQL, of its server processes;
- ``read``: every row read back by id as ``GET /v1/evaluations/{id}`` reads it
  (``get_evaluation_result``), checked byte for byte against what was returned;
- ``bytes_per_row``: what the database holds per evaluation (SQLite: the file after a
  checkpoint, PostgreSQL: the table with its TOAST and indexes), and the result's own size.

The same script runs on a checkout before stored results were compressed, so the two can be
compared back to back (``git stash``/``git worktree``). PostgreSQL on 127.0.0.1:5432 (or
``COVERAGE_CRITERIA_BENCH_POSTGRES_URL``); skipped when unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cli_batch import bench_cases  # noqa: E402
from http_load import database_url  # noqa: E402

from sqlalchemy import text  # noqa: E402

from service.engine.evaluation import Evaluator  # noqa: E402
from service.json_output import json_bytes  # noqa: E402
from service.store.database import Database, sqlite_file  # noqa: E402
from service.store.evaluations import evaluation_row, get_evaluation_result  # noqa: E402
from service.store.keys import KeyRecord, create_key  # noqa: E402

READER = KeyRecord("bench", "intake", None, "default")  # reads its organization's results, as an intake key


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def backends_cpu_seconds(database: Database) -> dict[int, float]:
    """CPU seconds of each PostgreSQL server process serving this database (Linux /proc)."""
    with database.engine.connect() as connection:
        pids = connection.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).all()
    seconds = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def measure(url: str, evaluated: list[tuple], batch: int) -> dict:
    database = Database(url)
    database.migrate()
    key_id = create_key(database, "intake", label="bench/storage.py")[0]
    postgresql = database.url.get_backend_name() == "postgresql"
    rows = len(evaluated)

    database.writer.commit([])  # the writer thread and its connection started before timing
    before = backends_cpu_seconds(database) if postgresql else {}
    started, cpu = time.perf_counter(), cpu_seconds()
    for start in range(0, rows, batch):
        futures = [database.writer.submit([evaluation_row(**columns, key_id=key_id)])
                   for columns, _ in evaluated[start:start + batch]]
        for future in futures:
            future.result()
    write = {
        "wall_us_per_row": round((time.perf_counter() - started) / rows * 1e6, 1),
        "cpu_us_per_row": round((cpu_seconds() - cpu) / rows * 1e6, 1),
    }
    if postgresql:
        after = backends_cpu_seconds(database)
        spent = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
        write["postgresql_cpu_us_per_row"] = round(spent / rows * 1e6, 1)

    started, cpu = time.perf_counter(), cpu_seconds()
    for columns, result_json in evaluated:
        if get_evaluation_result(database, READER, columns["evaluation_id"]) != result_json:
            sys.exit(f"{columns['evaluation_id']} did not come back as it was returned")
    read = {
        "wall_us_per_row": round((time.perf_counter() - started) / rows * 1e6, 1),
        "cpu_us_per_row": round((cpu_seconds() - cpu) / rows * 1e6, 1),
    }

    with database.engine.connect() as connection:
        if postgresql:
            size = connection.scalar(text("SELECT pg_total_relation_size('evaluations')"))
        else:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            size = sqlite_file(database.url).stat().st_size
    database.dispose()
    return {"write": write, "read": read, "bytes_per_row": round(size / rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000)
    parser.add_argument("--batch", type=int, default=32, help="rows waiting for the group commit at a time")
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()

    evaluator = Evaluator.from_rules_dir()
    cases, source = bench_cases(args.rows)
    evaluated = []
    for case in cases:
        result = evaluator.evaluate(case)
        result_json = json_bytes(result).decode()
        evaluated.append(({"evaluation_id": result["evaluation_id"], "external_id": result["external_id"],
                           "policy_id": result["policy"]["id"], "policy_version": result["policy"]["version"],
                           "organization": "default", "case_json": json_bytes(case).decode(), "result_json": result_json}, result_json))
    figures = {}
    for backend in args.backends:
        with database_url(backend) as url:
            figures[backend] = measure(url, evaluated, args.batch) if url else {"skipped": "unreachable"}
    print(json.dumps({
        "benchmark": "storage",
        "rows": args.rows,
        "source": source,
        "batch": args.batch,
        "result_bytes": round(sum(len(r.encode()) for _, r in evaluated) / len(evaluated)),
        **figures,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
    }, indent=2))


if __name__ == "__main__":
    main()
