"""Time ``coverage-criteria rules impact`` on many stored evaluations; print JSON figures.

    python bench/impact.py [--evaluations 100000] [--distinct 10000] [--database-url URL] [--workers 1,2]

Stores ``--evaluations`` rows in the evaluations table (a fresh SQLite file unless a URL is
given: its table is emptied first), made from ``--distinct`` generated cases (bench/cli_batch.py)
each evaluated once under the bundled ISASS 1.0.0 and stored several times under new ids: every
row is replayed in full, so the replay costs what distinct rows would. Then runs the command as a
subprocess on two candidates, each a copy of ISASS as 1.1.0: ``same`` (unchanged: nothing moves,
so its memory is that of streaming alone) and ``nrs-7`` (ISASS-RN-04 at NRS 7: the cases with NRS 6
move, ~28 %, and the report lists each). For each run: evaluations/s over the command's whole life
(start-up and count included), the peak resident memory of the command and its workers (sampled
every 50 ms) and the kernel's peak of the largest process. ``same`` runs at a tenth of the rows
too: equal peaks at both sizes show that memory does not grow with the rows replayed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
from candidates import ISASS, candidate  # noqa: E402  (tests/candidates.py: the same copies the tests use)
from cli_batch import generate, tree_rss_mib  # noqa: E402

from sqlalchemy import delete, insert, select  # noqa: E402

from service.engine.evaluation import Evaluator  # noqa: E402
from service.store.database import Database  # noqa: E402
from service.store.evaluations import evaluation_row  # noqa: E402
from service.store.tables import Evaluation, utc_now  # noqa: E402
from service.store.keys import create_key  # noqa: E402


def fill(database: Database, evaluations: int, distinct: int) -> float:
    """Store ``evaluations`` rows; return the seconds it took."""
    started = time.perf_counter()
    evaluator = Evaluator.from_rules_dir()
    with database.write() as connection:
        connection.execute(delete(Evaluation))
    key_id = create_key(database, "intake", label="bench/impact.py")[0]
    stored = []
    for case in generate(distinct):
        result = evaluator.evaluate(case)
        # a row as the service stores it (its result compressed), copied below under new ids
        stored.append(evaluation_row(evaluation_id="", external_id=case["external_id"], policy_id=ISASS,
                                     policy_version="1.0.0", key_id=key_id, case_json=json.dumps(case),
                                     result_json=json.dumps(result))[1])
    for start in range(0, evaluations, 1000):
        rows = []
        for index in range(start, min(start + 1000, evaluations)):
            rows.append({**stored[index % distinct], "id": str(uuid.uuid4()), "created_at": utc_now()})
        with database.write() as connection:
            connection.execute(insert(Evaluation), rows)
    return time.perf_counter() - started


def run(candidate_dir: Path, database_url: str, workers: int) -> dict:
    command = [sys.executable, "-m", "service.cli", "rules", "impact", str(candidate_dir), "--json",
               "--workers", str(workers)]
    env = {**os.environ, "COVERAGE_CRITERIA_DATABASE_URL": database_url}
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        peak = 0.0
        while process.poll() is None:
            peak = max(peak, tree_rss_mib(process.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        if process.returncode:
            raise SystemExit(f"{command} failed: {process.stderr.read().decode()}")
        out.seek(0)
        report = json.load(out)
    return {"seconds": round(seconds, 1), "evaluations": report["evaluations"], "changed": report["changed"],
            "evaluations_per_s": round(report["evaluations"] / seconds), "peak_rss_mib": round(peak, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=10_000)
    parser.add_argument("--database-url", help="default: a new SQLite file in a temporary folder")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts for the nrs-7 runs")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-impact-"))
    try:
        url = args.database_url or f"sqlite:///{folder / 'bench.db'}"
        database = Database(url)
        database.migrate()
        fill_seconds = fill(database, args.evaluations, args.distinct)
        database.dispose()
        same = candidate(folder / "same", {})
        nrs_7 = candidate(folder / "nrs-7", {"{field: low_back_pain.nrs, at_least: 6}":
                                             "{field: low_back_pain.nrs, at_least: 7}"})
        runs = {
            "same, all rows, 1 worker": run(same, url, 1),
            **{f"nrs-7, all rows, {w} worker{'s' if w > 1 else ''}": run(nrs_7, url, w)
               for w in map(int, args.workers.split(","))},
        }
        smaller = Database(url)
        with smaller.write() as connection:  # keep a tenth: the same rows replayed, fewer of them
            connection.execute(delete(Evaluation).where(
                Evaluation.id.notin_(
                    select(Evaluation.id).order_by(Evaluation.id)
                    .limit(args.evaluations // 10).scalar_subquery())))
        smaller.dispose()
        runs["same, a tenth of the rows, 1 worker"] = run(same, url, 1)
        print(json.dumps({
            "backend": url.split(":", 1)[0],
            "stored_evaluations": args.evaluations,
            "distinct_cases": args.distinct,
            "fill_seconds": round(fill_seconds, 1),
            "runs": runs,
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "bench_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }, indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
