"""Evaluations per second and p50/p99 latency over HTTP at rising concurrency; print JSON figures.

    python bench/http_load.py [--backends sqlite postgresql] [--workers 1 2] [--levels 1 8 32 128]
                              [--burst 500] [--seconds 8]

For each database backend and worker count it starts a real server (``coverage-criteria serve``)
on a free loopback port with a temporary data folder (PostgreSQL: a database it creates and
drops), creates an intake key with ``coverage-criteria keys create``, and for each concurrency
level keeps that many requests in flight for ``--seconds``: first ``GET /health`` (the floor: a
bare FastAPI endpoint on the same server, same middleware, no key, no body), then
``POST /v1/evaluations`` with generated cases (``generate`` from bench/cli_batch.py), each with
its own ``external_id``. Then a burst: ``--burst`` requests sent at once, each on its own
connection. Every evaluation must come back 201 with its own ``external_id``; failures are
counted and the exit status is 1 if there were any.

Besides requests per second and latency, each run reports the CPU time per request of the server
processes (all workers), of PostgreSQL's processes and of this load generator, and how many
CPUs' worth of time other processes took meanwhile and the hypervisor withheld (steal), from
Linux /proc: what the service costs, apart from what a shared machine allowed.

The per-key rate limit is turned off on the benchmark server (it measures capacity, and one key
sends everything). The load generator (httpx, one asyncio loop) runs on the same machine and
takes CPU from the server: figures are what one machine does as client and server at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from cli_batch import generate

COMMAND = Path(sys.executable).parent / "coverage-criteria"
POSTGRES_ADMIN_URL = os.environ.get("COVERAGE_CRITERIA_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MAX_REQUESTS_PER_RUN = 100_000
STARTUP_SECONDS = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="server worker processes to try")
    parser.add_argument("--levels", nargs="+", type=int, default=[1, 8, 32, 128], help="requests in flight")
    parser.add_argument("--burst", type=int, default=500, help="requests sent at once at the end")
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each run")
    args = parser.parse_args()

    load_at_start = [round(load, 2) for load in os.getloadavg()]
    cases = generate(5_000)
    numbers = count()
    runs, failures = [], 0
    for backend in args.backends:
        for workers in args.workers:
            with database_url(backend) as url:
                if url is None:
                    runs.append({"backend": backend, "workers": workers, "skipped": f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}"})
                    continue
                with server(url, workers) as (base_url, key, pid):
                    run = asyncio.run(measure(base_url, key, pid, cases, numbers, args))
            failures += run["burst"]["failures"] + sum(
                level[kind]["failures"] for level in run["levels"] for kind in ("floor_health", "evaluations")
            )
            runs.append({"backend": backend, "workers": workers, **run})
    print(json.dumps({
        "benchmark": "http_load",
        "seconds_per_run": args.seconds,
        "runs": runs,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": load_at_start,
        },
    }, indent=2))
    sys.exit(1 if failures else 0)


async def measure(base_url: str, key: str, pid: int, cases: list[dict], numbers: Iterator[int], args) -> dict[str, Any]:
    headers = {"X-API-Key": key, "Content-Type": "application/json"}

    def evaluation() -> dict:
        number = next(numbers)
        return {**cases[number % len(cases)], "external_id": f"HTTP-{number:09d}"}

    def health() -> None:
        return None

    levels = []
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:
        await run_for(client, evaluation, pid, concurrency=8, seconds=1)  # warm-up: threads, connections, caches
        for concurrency in args.levels:
            floor = await run_for(client, health, pid, concurrency, args.seconds / 2)
            evaluations = await run_for(client, evaluation, pid, concurrency, args.seconds)
            levels.append({"concurrency": concurrency, "floor_health": floor, "evaluations": evaluations})
    limits = httpx.Limits(max_connections=args.burst, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=300, limits=limits) as client:
        burst = await run_count(client, evaluation, pid, args.burst)
    return {"levels": levels, "burst": burst}


async def run_for(client: httpx.AsyncClient, request: Callable[[], dict | None], pid: int, concurrency: int,
                  seconds: float) -> dict[str, Any]:
    """Keep ``concurrency`` requests in flight until ``seconds`` have passed."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    failures: list[str] = []

    async def user() -> None:
        while time.perf_counter() < deadline and len(latencies) < MAX_REQUESTS_PER_RUN:
            await send(client, request(), latencies, failures)

    with Stopwatch(pid) as watch:
        await asyncio.gather(*(user() for _ in range(concurrency)))
    return figures(latencies, failures, watch)


async def run_count(client: httpx.AsyncClient, request: Callable[[], dict | None], pid: int,
                    requests: int) -> dict[str, Any]:
    """Send ``requests`` requests at once."""
    latencies: list[float] = []
    failures: list[str] = []
    with Stopwatch(pid) as watch:
        await asyncio.gather(*(send(client, request(), latencies, failures) for _ in range(requests)))
    return {"requests_at_once": requests, **figures(latencies, failures, watch)}


async def send(client: httpx.AsyncClient, case: dict | None, latencies: list[float], failures: list[str]) -> None:
    """``POST /v1/evaluations`` with ``case``, or ``GET /health`` for None; checks the answer."""
    started = time.perf_counter()
    try:
        if case is None:
            response = await client.get("/health")
        else:
            response = await client.post("/v1/evaluations", content=json.dumps(case))
    except httpx.HTTPError as error:
        failures.append(f"{type(error).__name__}: {error}")
        return
    latencies.append(time.perf_counter() - started)
    if response.status_code != (200 if case is None else 201):
        failures.append(f"{response.status_code} {response.text[:200]}")
    elif case is not None and response.json()["external_id"] != case["external_id"]:
        failures.append(f"external_id {response.json()['external_id']} for {case['external_id']}")


def figures(latencies: list[float], failures: list[str], watch: Stopwatch) -> dict[str, Any]:
    ordered = sorted(latencies)
    done = max(1, len(latencies))
    return {
        "requests": len(latencies),
        "per_second": round(len(latencies) / watch.seconds, 1),
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 2) if ordered else None,
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2) if ordered else None,
        "mean_ms": round(1000 * statistics.fmean(ordered), 2) if ordered else None,
        "server_cpu_ms_per_request": round(1000 * watch.server_cpu / done, 3),
        "database_cpu_ms_per_request": round(1000 * watch.database_cpu / done, 3),
        "client_cpu_ms_per_request": round(1000 * watch.client_cpu / done, 3),
        "other_processes_cpus": round(max(0.0, watch.other_cpu) / watch.seconds, 2),
        "stolen_cpus": round(watch.stolen_cpu / watch.seconds, 2),
        "failures": len(failures),
        "first_failures": failures[:3],
    }


class Stopwatch:
    """Wall time; CPU time of the server (the process and its workers), of this process, and of
    everything else on the machine."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def __enter__(self) -> Stopwatch:
        self._wall, self._client = time.perf_counter(), time.process_time()
        self._busy, self._stolen = machine_cpu()
        self._server, self._database = process_cpu(self.server_pid)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds = time.perf_counter() - self._wall
        server, database = process_cpu(self.server_pid)
        self.server_cpu, self.database_cpu = server - self._server, database - self._database
        self.client_cpu = time.process_time() - self._client
        busy, stolen = machine_cpu()
        self.other_cpu = busy - self._busy - self.server_cpu - self.database_cpu - self.client_cpu
        self.stolen_cpu = stolen - self._stolen


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
def server(url: str, workers: int) -> Iterator[tuple[str, str, int]]:
    """``coverage-criteria serve`` on a free loopback port; yields its base URL, an intake key and its pid."""
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "COVERAGE_CRITERIA_DATA_DIR": folder,
            "COVERAGE_CRITERIA_DATABASE_URL": url,
            "COVERAGE_CRITERIA_RATE_LIMIT_PER_MINUTE": "0",
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
