"""Stored evaluations per second over HTTP next to GET /health of the same server; print JSON.

    apt-get install -y wrk          # the load generator (Debian's package), once
    python bench/http_load.py [--runs sqlite:1 postgresql:2] [--levels 1 8 32 128] [--seconds 8]

For each ``backend:workers`` run it starts a real server (``coverage-criteria serve``) on a free
loopback port with a temporary data folder (PostgreSQL: a database it creates and drops, on
127.0.0.1:5432 or ``COVERAGE_CRITERIA_BENCH_POSTGRES_URL``; skipped when unreachable), creates an
intake key with ``coverage-criteria keys create``, warms it up, and for each level keeps that
many requests in flight with ``wrk`` (one client thread, one connection per request in flight):
first ``GET /health`` for half as long (the floor: a bare endpoint on the same server, same
middleware, no key, no body, no database), then ``POST /v1/evaluations`` with the bodies of
../shared/bench/http-bodies-500.jsonl.gz (generated cases, ``generate`` from bench/cli_batch.py,
where that file is absent; bench/wrk_requests.lua gives each its own external_id).

The last lines say, for each run at 32 requests in flight, the figures the targets name and
whether each holds (issue 22): SQLite with one worker, evaluations >= 0.6 x GET /health, >= 1,000
evaluations/s and p99 <= 50 ms; PostgreSQL with two workers, >= 1,200 evaluations/s.

wrk costs the client ~0.1 ms of CPU a request (an httpx load generator cost 3-6 ms on the same two
CPUs and hid part of the server's speed). An evaluation counts once it was answered 201; after
each level the database must hold every one of them, each stored result and case naming the
external_id it was sent with. Any other answer, or a missing or mismatched row, is a failure and
the exit status is 1.

Each level reports requests/s, p50/p99 latency (wrk's), and CPU per request from Linux /proc: of
the server (all its processes), of PostgreSQL, of wrk, and how many CPUs' worth other processes
took meanwhile and the hypervisor withheld (steal). On a shared machine read the ratio of
evaluations to the floor measured in the same run, not the absolute figures.
The per-key rate limit is off on the benchmark server (it measures capacity, one key sends all);
``--rate-limit 100000000`` turns it on without refusing anything, to measure what counting costs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from service.store.evaluations import RESULT_COLUMNS, result_text
from service.store.tables import Evaluation

COMMAND = Path(sys.executable).parent / "coverage-criteria"
LUA = Path(__file__).resolve().parent / "wrk_requests.lua"
POSTGRES_ADMIN_URL = os.environ.get("COVERAGE_CRITERIA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
STARTUP_SECONDS = 60
SHARED_BODIES = Path(__file__).resolve().parents[2] / "shared" / "bench" / "http-bodies-500.jsonl.gz"
TARGET_LEVEL = 32
TARGETS = {  # (backend, workers) -> what must hold at TARGET_LEVEL in flight
    ("sqlite", 1): {"over_health_at_least": 0.6, "per_second_at_least": 1000, "p99_ms_at_most": 50},
    ("postgresql", 2): {"per_second_at_least": 1200},
}


def bodies() -> tuple[list[dict], str]:
    """The cases to POST (without external_id) and where they came from."""
    if SHARED_BODIES.exists():
        lines = gzip.decompress(SHARED_BODIES.read_bytes()).decode().splitlines()
        return [json.loads(line) for line in lines if line.strip()], str(SHARED_BODIES)
    from cli_batch import generate

    return generate(5_000), "generated (bench/cli_batch.py)"


def against_targets(backend: str, workers: int, levels: list[dict]) -> dict[str, Any] | None:
    targets = TARGETS.get((backend, workers))
    level = next((level for level in levels if level["in_flight"] == TARGET_LEVEL), None)
    if targets is None or level is None:
        return None
    measured = {"per_second": level["evaluations"]["per_second"], "over_health": level["evaluations_over_floor"],
                "p99_ms": level["evaluations"]["p99_ms"]}
    holds = {}
    for name, bound in targets.items():
        figure, _, sense = name.rpartition("_at_")
        holds[name.replace("_at_", " at ").replace("_", " ") + f" {bound}"] = (
            measured[figure] >= bound if sense == "least" else measured[figure] <= bound)
    return {"run": f"{backend}:{workers}", "in_flight": TARGET_LEVEL, **measured, "holds": holds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["sqlite:1", "postgresql:2"],
                        help="backend:workers pairs (backend: sqlite or postgresql)")
    parser.add_argument("--levels", nargs="+", type=int, default=[1, 8, 32, 128], help="requests in flight")
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each evaluation level")
    parser.add_argument("--rate-limit", type=int, default=0,
                        help="the per-key rate limit a minute (default 0: off, one key sends everything); a "
                             "limit too high to refuse anything measures what counting costs (PostgreSQL: a row a take)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")

    load_at_start = [round(load, 2) for load in os.getloadavg()]
    runs, failures, summary = [], 0, []
    cases, source = bodies()
    with tempfile.TemporaryDirectory() as folder:
        cases_file = Path(folder) / "cases.jsonl"
        cases_file.write_text("".join(
            json.dumps({k: v for k, v in case.items() if k != "external_id"}, separators=(",", ":")) + "\n"
            for case in cases
        ))
        levels = count()
        for backend, _, workers in (run.partition(":") for run in args.runs):
            with database_url(backend) as url:
                if url is None:
                    runs.append({"backend": backend, "workers": int(workers),
                                 "skipped": f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}"})
                    continue
                with server(url, int(workers), rate_limit=args.rate_limit) as (base_url, key, pid):
                    run = measure(base_url, key, pid, url, cases_file, levels, args)
            failures += sum(level["failures"] for level in run)
            runs.append({"backend": backend, "workers": int(workers), "levels": run})
            if (checked := against_targets(backend, int(workers), run)) is not None:
                summary.append(checked)
    print(json.dumps({
        "benchmark": "http_load",
        "bodies": source,
        "load_generator": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0],
        "seconds_per_level": args.seconds,
        "rate_limit_per_minute": args.rate_limit,
        "runs": runs,
        "targets": summary,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": load_at_start,
        },
    }, indent=2))
    for checked in summary:  # the targets, in words, on standard error
        holds = "; ".join(f"{name}: {'yes' if ok else 'NO'}" for name, ok in checked["holds"].items())
        print(f"{checked['run']} at {checked['in_flight']} in flight: {checked['per_second']:.0f} evaluations/s = "
              f"{checked['over_health']:.2f} x GET /health, p99 {checked['p99_ms']:.0f} ms -- {holds}", file=sys.stderr)
    sys.exit(1 if failures else 0)


def measure(base_url: str, key: str, pid: int, url: str, cases_file: Path, levels: Iterator[int],
            args) -> list[dict[str, Any]]:
    posts = {"KEY": key, "CASES": str(cases_file)}
    wrk(base_url + "/v1/evaluations", 8, 2, {**posts, "PREFIX": "WARMUP"}, pid)  # threads, connections, caches
    results = []
    database = create_engine(url)
    try:
        for in_flight in args.levels:
            prefix = f"L{next(levels)}"
            floor = wrk(base_url + "/health", in_flight, args.seconds / 2, {}, pid)
            evaluations = wrk(base_url + "/v1/evaluations", in_flight, args.seconds, {**posts, "PREFIX": prefix}, pid)
            problems = check_stored(database, prefix, evaluations["answered"])
            failures = evaluations["errors"] + floor["errors"] + len(problems)
            results.append({
                "in_flight": in_flight,
                "floor_health": floor,
                "evaluations": evaluations,
                "evaluations_over_floor": round(evaluations["per_second"] / floor["per_second"], 2),
                "failures": failures,
                "first_problems": problems[:3],
            })
    finally:
        database.dispose()
    return results


def wrk(url: str, in_flight: int, seconds: float, env: dict[str, str], server_pid: int,
        script: Path = LUA) -> dict[str, Any]:
    """One wrk run (``script``: the Lua that writes its requests); its figures with the CPU each party spent."""
    command = ["wrk", "-t1", f"-c{in_flight}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "-s", str(script), url]
    with Stopwatch(server_pid) as watch:
        done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK-JSON ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"wrk failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    out = json.loads(lines[-1].removeprefix("WRK-JSON "))
    errors = sum(out[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    answered = out["requests"] - out["status_errors"]
    done_count = max(1, out["requests"])
    return {
        "answered": answered,
        "per_second": round(answered / (out["duration_us"] / 1e6), 1),
        "p50_ms": round(out["p50_us"] / 1000, 2),
        "p99_ms": round(out["p99_us"] / 1000, 2),
        "max_ms": round(out["max_us"] / 1000, 2),
        "server_cpu_ms_per_request": round(1000 * watch.server_cpu / done_count, 3),
        "database_cpu_ms_per_request": round(1000 * watch.database_cpu / done_count, 3),
        "client_cpu_ms_per_request": round(1000 * watch.client_cpu / done_count, 3),
        "server_cpus": round(watch.server_cpu / watch.seconds, 2),
        "other_processes_cpus": round(max(0.0, watch.other_cpu) / watch.seconds, 2),
        "stolen_cpus": round(watch.stolen_cpu / watch.seconds, 2),
        "errors": errors,
    }


def check_stored(database, prefix: str, answered: int) -> list[str]:
    """Every answered evaluation of a level must be stored, its result and case naming its external_id
    (both begin with it: ``{"evaluation_id":…,"external_id":…`` and ``{"external_id":…``)."""
    query = (select(Evaluation.id, Evaluation.external_id, Evaluation.case_json, *RESULT_COLUMNS)
             .where(Evaluation.external_id.like(f"{prefix}-%")))
    with database.connect() as connection:
        rows = connection.execute(query).all()
    problems = [f"only {len(rows)} stored for {answered} answered with 201"] if len(rows) < answered else []
    for evaluation_id, external_id, case_json, *result in rows:
        expected = f'{{"evaluation_id":"{evaluation_id}","external_id":"{external_id}"'
        if not result_text(*result).startswith(expected) or not case_json.startswith(f'{{"external_id":"{external_id}"'):
            problems.append(f"stored row {evaluation_id} does not match its external_id {external_id}")
    return problems


class Stopwatch:
    """Wall time; CPU time of the server (the process and its workers), of PostgreSQL, of the load
    generator (this process's finished children), and of everything else on the machine."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def __enter__(self) -> Stopwatch:
        self._wall, self._client = time.perf_counter(), children_cpu()
        self._busy, self._stolen = machine_cpu()
        self._server, self._database = process_cpu(self.server_pid)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        server, database = process_cpu(self.server_pid)
        self.server_cpu, self.database_cpu = server - self._server, database - self._database
        self.client_cpu = children_cpu() - self._client
        busy, stolen = machine_cpu()
        self.other_cpu = busy - self._busy - self.server_cpu - self.database_cpu - self.client_cpu
        self.stolen_cpu = stolen - self._stolen


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_cpu() -> tuple[float, float]:
    """CPU seconds the whole machine (all CPUs) has spent busy, and has had stolen by the hypervisor."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK"), steal / os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> tuple[float, float]:
    """User + system CPU seconds of ``pid`` with its child processes, and of all PostgreSQL processes."""
    server = database = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, _, rest = stat.read_text().partition(" (")[2].rpartition(")")
        except OSError:
            continue  # the process ended while we looked
        fields = rest.split()
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # fields[1] is the parent's pid
            server += int(fields[11]) + int(fields[12])  # utime, stime
        elif name == "postgres":  # with cutime, cstime: connections' processes that have ended
            database += sum(map(int, fields[11:15]))
    return server / os.sysconf("SC_CLK_TCK"), database / os.sysconf("SC_CLK_TCK")


@contextmanager
def database_url(backend: str) -> Iterator[str | None]:
    """A fresh SQLite file, or a PostgreSQL database created for this run and dropped after it."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        yield None
        return
    name = f"coverage_criteria_bench_{secrets.token_hex(4)}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


@contextmanager
def server(url: str, workers: int, extra_env: dict[str, str] | None = None,
           rate_limit: int = 0) -> Iterator[tuple[str, str, int]]:
    """``coverage-criteria serve`` on a free loopback port; yields its base URL, an intake key and its pid.
    ``extra_env``: more environment (``PYTHONPATH`` of another checkout, for bench/http_compare.py)."""
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            **(extra_env or {}),
            "COVERAGE_CRITERIA_DATA_DIR": folder,
            "COVERAGE_CRITERIA_DATABASE_URL": url,
            "COVERAGE_CRITERIA_RATE_LIMIT_PER_MINUTE": str(rate_limit),
        }
        created = subprocess.run([COMMAND, "keys", "create", "--role", "intake", "--label", "bench"],
                                 env=env, capture_output=True, text=True, check=True)
        key = created.stdout.strip().splitlines()[-1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = open(Path(folder) / "server.log", "wb")
        process = subprocess.Popen(
            [COMMAND, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_healthy(process, base_url, Path(folder) / "server.log")
            yield base_url, key, process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def wait_until_healthy(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    sys.exit(f"server did not answer /health within {STARTUP_SECONDS} s")


if __name__ == "__main__":
    main()
