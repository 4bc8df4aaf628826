"""Da Vinci PAS ``Claim/$submit`` latency at a number of requests in flight; print JSON.

    apt-get install -y wrk          # the load generator, once (as bench/http_load.py)
    python bench/pas_submit.py [--runs sqlite:1 postgresql:1] [--levels 1 8] [--seconds 10]

PAS allows 15 s from the provider's click to the answer (spec-7); the target here is a p99
under 1 s at 8 requests in flight on one worker. For each ``backend:workers`` run a real server
(``coverage-criteria serve``, bench/http_load.py's ``server``) gets, at each level, ``GET /health``
for half as long (the floor), then PAS request Bundles from ``wrk`` (bench/wrk_pas.lua). The
Bundles are variants of the worked example (bench/fhir_intake.py's ``variants``: their own NRS,
BMI, birth date and ODI answers) wrapped as PAS requests: the Claim first (CPT 64568, urgent for
one in four), the requestor and insurer Organizations, the Coverage, the Patient, and each clinical
resource in ``supportingInfo``; half without the clinician's QuestionnaireResponse, so their
answer also asks for documentation. Every request has its own Claim identifier (a request of its
own). Each answer must be 200 and every answered request stored; otherwise the exit status is 1.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import sys
import tempfile
from itertools import count
from pathlib import Path
from typing import Any

from fhir_intake import variants
from http_load import POSTGRES_ADMIN_URL, database_url, server, wrk
from sqlalchemy import create_engine, text

LUA = Path(__file__).resolve().parent / "wrk_pas.lua"
PAS = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition"
CLINICAL = ("Observation", "Condition", "Procedure", "QuestionnaireResponse")


def pas_request(bundle: dict[str, Any], index: int) -> dict[str, Any]:
    """The worked example's resources as a PAS request Bundle whose Claim identifier is ``__ID__``."""
    resources = [copy.deepcopy(e["resource"]) for e in bundle["entry"]]
    if index % 2:  # without the clinician's answers: the answer asks for them
        resources = [r for r in resources if r.get("id") != "criteria-answers-1"]
    clinical = [r for r in resources if r["resourceType"] in CLINICAL]
    claim = {
        "resourceType": "Claim", "id": "claim-1", "meta": {"profile": [f"{PAS}/profile-claim"]},
        "identifier": [{"system": "urn:example:trn", "value": "__ID__"}],
        "status": "active", "use": "preauthorization", "created": "2026-11-25T10:00:00Z",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
        "patient": {"reference": "Patient/pat-1"},
        "insurer": {"reference": "Organization/insurer-1"},
        "provider": {"reference": "Organization/requestor-1"},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority",
                                 "code": "stat" if index % 4 == 0 else "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/cov-1"}}],
        "supportingInfo": [{"sequence": n, "category": {"coding": [{
            "system": "http://hl7.org/fhir/us/davinci-pas/CodeSystem/PASTempCodes", "code": "additionalInformation"}]},
            "valueReference": {"reference": f"{r['resourceType']}/{r['id']}"}} for n, r in enumerate(clinical, 1)],
        "item": [{"sequence": 1, "servicedDate": "2026-12-01",
                  "productOrService": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "64568"}]}}],
    }
    organizations = [{"resourceType": "Organization", "id": rid, "name": name}
                     for rid, name in (("insurer-1", "Example Health Plan"), ("requestor-1", "Example Spine Clinic"))]
    kept = [r for r in resources if r["resourceType"] in (*CLINICAL, "Patient", "Coverage")]
    entries = [claim, *organizations, *kept]
    return {"resourceType": "Bundle", "type": "collection", "identifier": {"system": "urn:example:tx", "value": "BENCH"},
            "timestamp": "2026-11-25T10:00:00Z",
            "entry": [{"fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r}
                      for r in entries]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["sqlite:1", "postgresql:1"], help="backend:workers pairs")
    parser.add_argument("--levels", nargs="+", type=int, default=[1, 8], help="requests in flight")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each level")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    load_at_start = [round(load, 2) for load in os.getloadavg()]
    runs, failures, levels = [], 0, count()
    with tempfile.TemporaryDirectory() as folder:
        bodies = Path(folder) / "bodies.jsonl"
        requests = [pas_request(b, i) for i, b in enumerate(variants(200))]
        bodies.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in requests))
        body_bytes = sorted(len(json.dumps(r, separators=(",", ":"))) for r in requests)
        for backend, _, workers in (run.partition(":") for run in args.runs):
            with database_url(backend) as url:
                if url is None:
                    runs.append({"backend": backend, "workers": int(workers),
                                 "skipped": f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}"})
                    continue
                with server(url, int(workers)) as (base_url, key, pid):
                    posts = {"KEY": key, "BODIES": str(bodies)}
                    wrk(base_url + "/fhir/Claim/$submit", 4, 2, {**posts, "PREFIX": "WARMUP"}, pid, LUA)
                    results = []
                    database = create_engine(url)
                    for in_flight in args.levels:
                        prefix = f"L{next(levels)}"
                        floor = wrk(base_url + "/health", in_flight, args.seconds / 2, {}, pid)
                        submits = wrk(base_url + "/fhir/Claim/$submit", in_flight, args.seconds,
                                      {**posts, "PREFIX": prefix}, pid, LUA)
                        with database.connect() as connection:
                            kept = connection.scalar(text("SELECT count(*) FROM evaluations WHERE external_id LIKE :p"),
                                                     {"p": f"{prefix}-%"})
                        problems = [] if kept >= submits["answered"] else [f"{kept} stored for {submits['answered']} answered"]
                        failures += submits["errors"] + floor["errors"] + len(problems)
                        results.append({"in_flight": in_flight, "floor_health": floor, "submit": submits,
                                        "p99_under_1_s": submits["p99_ms"] < 1000, "problems": problems})
                    database.dispose()
            runs.append({"backend": backend, "workers": int(workers), "levels": results})
    print(json.dumps({
        "benchmark": "pas_submit",
        "bundle_bytes": {"min": body_bytes[0], "median": body_bytes[len(body_bytes) // 2], "max": body_bytes[-1]},
        "seconds_per_level": args.seconds,
        "runs": runs,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_start": load_at_start},
    }, indent=2))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
