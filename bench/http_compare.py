"""Stored evaluations per second of two (or more) checkouts of the service, measured in the same
run, interleaved; print JSON.

    python bench/http_compare.py --trees before=/path/to/main after=. [--runs sqlite:1 postgresql:2]
                                 [--levels 8 32] [--seconds 6] [--rounds 3]

On a machine shared with others, figures taken minutes apart differ by more than a change costs.
Here every checkout runs its own server (``coverage-criteria serve`` with the checkout first on
``PYTHONPATH``, a database of its own) at the same time, and each level is measured round after
round, the checkouts taking turns (the order reversed every round), so that both see the same
load; or, with ``--together``, all loaded at the same moment, sharing the CPUs (the one that
needs more CPU per evaluation then stores fewer: the ratio holds however busy the machine is;
the database CPU of PostgreSQL, counted for all its processes, is then the servers' together). It reports each checkout's median evaluations per second per level, and the median of the
per-round ratios to the first checkout (``relative_to_first``: 0.95 = 5 % fewer a second); and
the CPU the server and the database spent per stored evaluation (``cpu_relative_to_first``:
1.05 = 5 % more), which varies less than requests/s when other processes take the CPUs. Every
answered evaluation must be stored (bench/http_load.py's check); otherwise the exit status is 1.
Used for issue 19's "audit writing costs stored POST /v1/evaluations throughput less than 10 %":
the audit record rides the evaluation's group commit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from itertools import count
from pathlib import Path

from sqlalchemy import create_engine

from cli_batch import generate
from http_load import check_stored, database_url, server, wrk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", nargs="+", required=True, help="label=path of each checkout (the first is the base)")
    parser.add_argument("--runs", nargs="+", default=["sqlite:1", "postgresql:2"], help="backend:workers pairs")
    parser.add_argument("--levels", nargs="+", type=int, default=[8, 32], help="requests in flight")
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each level per checkout")
    parser.add_argument("--together", action="store_true",
                        help="load every checkout's server at the same time in each round, rather than in turns")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    trees = [(label, str(Path(path).resolve())) for label, _, path in (tree.partition("=") for tree in args.trees)]

    load_at_start = [round(load, 2) for load in os.getloadavg()]
    runs, failures, prefixes = [], 0, count()
    with tempfile.TemporaryDirectory() as folder:
        cases_file = Path(folder) / "cases.jsonl"
        cases_file.write_text("".join(
            json.dumps({k: v for k, v in case.items() if k != "external_id"}, separators=(",", ":")) + "\n"
            for case in generate(5_000)))
        for backend, _, workers in (run.partition(":") for run in args.runs):
            with ExitStack() as stack:
                servers = {}
                for label, path in trees:
                    url = stack.enter_context(database_url(backend))
                    if url is None:
                        break
                    base, key, pid = stack.enter_context(server(url, int(workers), {"PYTHONPATH": path}))
                    servers[label] = (base, key, pid, stack.enter_context(_engine(url)))
                if len(servers) < len(trees):
                    runs.append({"backend": backend, "skipped": "database unreachable"})
                    continue
                for label, (base, key, pid, _) in servers.items():  # warm each up
                    wrk(base + "/v1/evaluations", 8, 2, {"KEY": key, "CASES": str(cases_file), "PREFIX": "WARMUP"}, pid)
                levels = []
                for in_flight in args.levels:
                    per_tree: dict[str, list[float]] = {label: [] for label, _ in trees}
                    cpu: dict[str, list[float]] = {label: [] for label, _ in trees}
                    for round_number in range(args.rounds):
                        order = list(servers.items())
                        order = order if round_number % 2 == 0 else order[::-1]
                        runs_of_round = [(label, base, key, pid, engine, f"C{next(prefixes)}")
                                         for label, (base, key, pid, engine) in order]

                        def measure(label, base, key, pid, engine, prefix):
                            figures = wrk(base + "/v1/evaluations", in_flight, args.seconds,
                                          {"KEY": key, "CASES": str(cases_file), "PREFIX": prefix}, pid)
                            return label, figures, check_stored(engine, prefix, figures["answered"])

                        if args.together:
                            with ThreadPoolExecutor(len(runs_of_round)) as pool:
                                measured = list(pool.map(lambda run: measure(*run), runs_of_round))
                        else:
                            measured = [measure(*run) for run in runs_of_round]
                        for label, figures, problems in measured:
                            failures += figures["errors"] + len(problems)
                            per_tree[label].append(figures["per_second"])
                            cpu[label].append(figures["server_cpu_ms_per_request"]
                                              + figures["database_cpu_ms_per_request"])
                    base_label = trees[0][0]
                    levels.append({
                        "in_flight": in_flight,
                        "per_second": per_tree,
                        "median_per_second": {label: statistics.median(v) for label, v in per_tree.items()},
                        "relative_to_first": {
                            label: round(statistics.median(a / b for a, b in zip(v, per_tree[base_label])), 3)
                            for label, v in per_tree.items() if label != base_label},
                        # CPU (server and database) per stored evaluation: what a request costs,
                        # steadier than requests/s while other processes take turns on the CPUs
                        "cpu_ms_per_request": cpu,
                        "median_cpu_ms_per_request": {label: round(statistics.median(v), 3) for label, v in cpu.items()},
                        "cpu_relative_to_first": {
                            label: round(statistics.median(v) / statistics.median(cpu[base_label]), 3)
                            for label, v in cpu.items() if label != base_label},
                    })
                runs.append({"backend": backend, "workers": int(workers), "levels": levels})
    print(json.dumps({
        "benchmark": "http_compare",
        "trees": dict(trees),
        "seconds_per_measurement": args.seconds,
        "rounds": args.rounds,
        "together": args.together,
        "runs": runs,
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(load, 2) for load in os.getloadavg()],
        "cpus": os.cpu_count(),
    }, indent=2))
    sys.exit(1 if failures else 0)


class _engine:
    """A SQLAlchemy engine for checking what a level stored, disposed of at the end."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def __enter__(self):
        return self.engine

    def __exit__(self, *_exc: object) -> None:
        self.engine.dispose()


if __name__ == "__main__":
    main()
