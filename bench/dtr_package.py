"""DTR ``$questionnaire-package`` latency: p50/p99 of calls to a real server; print JSON figures.

    python bench/dtr_package.py [--requests 300] [--concurrency 1 4]

Starts ``coverage-criteria serve`` (SQLite in a temporary folder), makes an intake key, stores
one evaluation with gaps, then times, one after the other:

- ``order``: the package a ReActiv8 order selects (the policy's questionnaire, its Library with
  CQL and ELM, five ValueSets, a draft response);
- ``context``: the package of that evaluation (its stored result read, only what it is missing).

Every answer is checked (200, a Parameters holding one package whose first entry is a
Questionnaire); the exit status is 1 if any was wrong. The target is a p50 under 50 ms.
Client and server share this machine's CPUs: compare the modes of one run, not runs on different days.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import start_server

CASE = json.loads((ROOT / "examples" / "case.json").read_text())
COVERAGE = {"resourceType": "Coverage", "id": "cov-1", "status": "active",
            "beneficiary": {"reference": "Patient/123"}, "payor": [{"reference": "Organization/payer"}]}
ORDER = {"resourceType": "ServiceRequest", "id": "order-1", "status": "draft", "intent": "order",
         "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "64568"}]},
         "subject": {"reference": "Patient/123"}, "occurrenceDateTime": "2026-12-01"}
PATH = "/fhir/Questionnaire/$questionnaire-package"


def parameters(mode: str, evaluation_id: str) -> bytes:
    entries: list[dict[str, Any]] = [{"name": "coverage", "resource": COVERAGE}]
    entries.append({"name": "order", "resource": ORDER} if mode == "order"
                   else {"name": "context", "valueString": evaluation_id})
    return json.dumps({"resourceType": "Parameters", "parameter": entries}).encode()


def correct(answer: httpx.Response) -> bool:
    if answer.status_code != 200:
        return False
    body = answer.json()
    return len(body["parameter"]) == 1 and body["parameter"][0]["resource"]["entry"][0]["resource"]["resourceType"] \
        == "Questionnaire"


async def run(base_url: str, key: str, evaluation_id: str, mode: str, requests: int, concurrency: int) -> dict[str, Any]:
    body = parameters(mode, evaluation_id)
    headers = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    wrong = 0
    queue = iter(range(requests))
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        async def worker() -> None:
            nonlocal wrong
            for _ in queue:
                started = time.perf_counter()
                answer = await client.post(PATH, content=body, headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                wrong += not correct(answer)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"mode": mode, "concurrency": concurrency, "requests": requests, "wrong": wrong,
            "calls_per_second": round(requests / elapsed, 1),
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
            "max_ms": round(latencies[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        env = {**os.environ, "COVERAGE_CRITERIA_DATA_DIR": str(data), "COVERAGE_CRITERIA_RATE_LIMIT_PER_MINUTE": "0"}
        env.pop("COVERAGE_CRITERIA_DATABASE_URL", None)
        created = subprocess.run([sys.executable, "-m", "service.cli", "keys", "create", "--role", "intake"], cwd=ROOT,
                                 env=env, capture_output=True, text=True, check=True)
        key = created.stdout.strip().splitlines()[-1]
        server, base_url = start_server(env, data / "server.log")
        try:
            gaps = {**CASE, "low_back_pain": {k: v for k, v in CASE["low_back_pain"].items() if k != "mechanical"}}
            stored = httpx.post(f"{base_url}/v1/evaluations", json=gaps, headers={"X-API-Key": key}, timeout=30)
            stored.raise_for_status()
            evaluation_id = stored.json()["evaluation_id"]
            figures = []
            for concurrency in args.concurrency:
                for mode in ("order", "context"):
                    asyncio.run(run(base_url, key, evaluation_id, mode, 20, concurrency))  # warm-up
                    figures.append(asyncio.run(run(base_url, key, evaluation_id, mode, args.requests, concurrency)))
                    print(json.dumps(figures[-1]), file=sys.stderr)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                      "target_p50_ms": 50, "results": figures}, indent=2))
    sys.exit(1 if any(f["wrong"] for f in figures) else 0)


if __name__ == "__main__":
    main()
