"""CDS Hooks latency: p50/p99 of order-sign calls to a real server; print JSON figures.

    python bench/cds_hooks.py [--requests 300] [--concurrency 1 8]

Starts ``coverage-criteria serve`` (SQLite in a temporary folder) trusting one ES384 client, and
an EHR FHIR server on loopback (a Python http.server in a thread of this process, as in the
tests). For each concurrency level it times, one after the other:

- ``no-order``: a call with no order of the policy (JWT check, jti stored, body parsed; the floor);
- ``prefetch``: a ReActiv8 order with everything in prefetch (Patient, Coverage, a DTR
  QuestionnaireResponse answering every criterion): map, evaluate, store, answer;
- ``fhir-server``: the same order with no prefetch: the six reads go to the loopback FHIR server
  with the call's token, then the same work.

With ``--hostile N``: N calls of 600 orders and 1,500 Observations (issue 16, 4: must answer
within CDS Hooks' 5 s), then four calls at once whose EHR answers 150 MiB to the Observation
search (issue 16, 5: cut off, the server's peak RSS growing less than 100 MiB).

Every call gets its own hookInstance and a token signed beforehand (signing is not timed). Every
answer is checked (200; one coverage-information update for the ReActiv8 calls); the exit status
is 1 if any was wrong. Client, server and FHIR server share this machine's CPUs: compare the
modes of one run, not runs on different days.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from cds_client import SIGN, FhirServer, Signer, clients_file, reactiv8_order, searchset  # noqa: E402
from fhir_support import response  # noqa: E402
from servers import start_server  # noqa: E402

PUBLIC_URL = "https://payer.bench.example"
PATH = f"/cds-services/{SIGN}"
TOKEN = "ehr-token"
CASE = json.loads((ROOT / "examples" / "case.json").read_text())
ANSWERS = {f"{section}.{name}": value for section, fields in CASE.items() if isinstance(fields, dict)
           for name, value in fields.items()}
PATIENT = {"resourceType": "Patient", "id": "123", "birthDate": "1974-06-15"}
COVERAGE = {"resourceType": "Coverage", "id": "cov-1", "status": "active",
            "beneficiary": {"reference": "Patient/123"}, "payor": [{"reference": "Organization/payer"}]}
DTR = {**response(ANSWERS, rid="qr-1"), "subject": {"reference": "Patient/123"}}


def body(mode: str, fhir_server: str) -> dict[str, Any]:
    orders = [] if mode == "no-order" else [reactiv8_order()]
    request: dict[str, Any] = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": "123",
                    "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                    "entry": [{"resource": o} for o in orders]}},
    }
    if mode == "fhir-server":
        request["fhirServer"] = fhir_server
        request["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                        "scope": "user/*.read", "subject": "cds-service"}
    else:
        request["prefetch"] = {"patient": PATIENT, "coverage": searchset(COVERAGE), "observations": searchset(),
                               "conditions": searchset(), "procedures": searchset(),
                               "questionnaireResponses": searchset(DTR)}
    return request


def correct(mode: str, answer: httpx.Response) -> bool:
    if answer.status_code != 200:
        return False
    actions = answer.json().get("systemActions", [])
    return actions == [] if mode == "no-order" else len(actions) == 1


async def run(base_url: str, signer: Signer, fhir_server: str, mode: str, requests: int, concurrency: int
              ) -> dict[str, Any]:
    calls = [(body(mode, fhir_server), signer.headers(PATH, PUBLIC_URL)) for _ in range(requests)]
    latencies: list[float] = []
    wrong = 0
    queue = iter(calls)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        async def worker() -> None:
            nonlocal wrong
            for payload, headers in queue:
                started = time.perf_counter()
                answer = await client.post(PATH, json=payload, headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                wrong += not correct(mode, answer)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "mode": mode, "concurrency": concurrency, "requests": requests, "wrong": wrong,
        "calls_per_second": round(requests / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "max_ms": round(latencies[-1], 2),
    }


def hostile_body() -> dict[str, Any]:
    """600 orders of the policy and 1,500 NRS Observations in prefetch, under 1 MiB (issue 16, 4)."""
    orders = [reactiv8_order(f"r8-{i}") for i in range(600)]
    observations = [{"resourceType": "Observation", "id": f"o{i}", "status": "final",
                     "subject": {"reference": "Patient/123"}, "effectiveDateTime": "2026-01-01",
                     "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]}, "valueInteger": i % 10}
                    for i in range(1500)]
    request = body("prefetch", "")
    request["context"]["draftOrders"]["entry"] = [{"resource": o} for o in orders]
    request["prefetch"]["observations"] = searchset(*observations)
    return request


def memory_kib(pid: int) -> dict[str, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) for name in ("VmRSS", "VmHWM")}


async def hostile(base_url: str, signer: Signer, ehr: FhirServer, pid: int, calls: int) -> list[dict[str, Any]]:
    """The two findings of issue 16 that are about time and memory, against the real server."""
    figures = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        latencies, wrong = [], 0
        for _ in range(calls):
            payload = hostile_body()
            started = time.perf_counter()
            answer = await client.post(PATH, json=payload, headers=signer.headers(PATH, PUBLIC_URL))
            latencies.append((time.perf_counter() - started) * 1000)
            result = answer.json() if answer.status_code == 200 else {}
            wrong += not (len(result.get("systemActions", [])) == 20 and len(result.get("cards", [])) == 1)
        latencies.sort()
        figures.append({"mode": "600 orders + 1,500 Observations", "requests": calls, "wrong": wrong,
                        "body_bytes": len(json.dumps(hostile_body())),
                        "p50_ms": round(statistics.median(latencies), 1), "max_ms": round(latencies[-1], 1)})

        def huge(path: str):
            if "/Observation" not in path:
                return None
            chunk = b" " * (1024 * 1024)
            return 200, {}, (chunk for _ in range(150))

        ehr.raw = huge
        before = memory_kib(pid)
        started = time.perf_counter()
        answers = await asyncio.gather(*(client.post(PATH, json=body("fhir-server", ehr.url),
                                                     headers=signer.headers(PATH, PUBLIC_URL)) for _ in range(4)))
        elapsed = time.perf_counter() - started
        health_started = time.perf_counter()
        await client.get("/health")
        after = memory_kib(pid)
        ehr.raw = None
        cut = sum(a.status_code == 200 and "over 2 MiB" in json.dumps(a.json()) for a in answers)
        figures.append({"mode": "4 calls at once, each EHR Observation answer 150 MiB", "requests": 4,
                        "wrong": 4 - cut, "elapsed_ms": round(elapsed * 1000, 1),
                        "health_after_ms": round((time.perf_counter() - health_started) * 1000, 1),
                        "rss_before_mib": round(before["VmRSS"] / 1024, 1),
                        "peak_rss_growth_mib": round((after["VmHWM"] - before["VmRSS"]) / 1024, 1)})
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--hostile", type=int, default=0, metavar="N",
                        help="also time N calls of 600 orders + 1,500 Observations, and four 150 MiB EHR answers")
    args = parser.parse_args()
    signer = Signer("ES384")
    with tempfile.TemporaryDirectory() as folder, FhirServer([PATIENT, COVERAGE, DTR], TOKEN) as ehr:
        data = Path(folder)
        env = {**os.environ, "COVERAGE_CRITERIA_DATA_DIR": str(data), "COVERAGE_CRITERIA_PUBLIC_URL": PUBLIC_URL,
               "COVERAGE_CRITERIA_CDS_CLIENTS": str(clients_file(data / "clients.json", signer,
                                                                 fhir_servers=[ehr.url])),
               "COVERAGE_CRITERIA_RATE_LIMIT_PER_MINUTE": "0"}
        env.pop("COVERAGE_CRITERIA_DATABASE_URL", None)
        server, base_url = start_server(env, data / "server.log")
        try:
            figures = []
            for concurrency in args.concurrency:
                for mode in ("no-order", "prefetch", "fhir-server"):
                    if not args.requests:
                        continue
                    asyncio.run(run(base_url, signer, ehr.url, mode, 20, concurrency))  # warm-up
                    figures.append(asyncio.run(run(base_url, signer, ehr.url, mode, args.requests, concurrency)))
                    print(json.dumps(figures[-1]), file=sys.stderr)
            if args.hostile:
                figures += asyncio.run(hostile(base_url, signer, ehr, server.pid, args.hostile))
                print(json.dumps(figures[-2:]), file=sys.stderr)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps({"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                      "results": figures}, indent=2))
    sys.exit(1 if any(f["wrong"] for f in figures) else 0)


if __name__ == "__main__":
    main()
