"""Replay a hostile client's inputs against a running server; print what went wrong, as JSON.

    python bench/probe_hostile.py --base-url http://127.0.0.1:8000 --intake-key cc_… \
        --reviewer-key cc_… [--log SERVER_LOG] [--case examples/case.json]

Sends every probe once (log forging through the path, unreadable and ambiguous JSON, error
amplification, bad headers, paging and idempotency abuse, trailing slashes, a client that hangs
up mid-body; FHIR Bundles and the review page: ``probe_fhir_review.py``) and checks each answer:
never a 5xx, JSON error bodies (an OperationOutcome to a FHIR request, an HTML page on the review
page), every 422 error naming its field, no error body over 64 KiB. With ``--log`` (the server's
combined stdout and stderr, as ``coverage-criteria serve`` writes it) it also checks what the
server wrote meanwhile: exactly one access line per request, every line printable ASCII, no
traceback, none of the patient ids the probes sent. Exit status 0 when nothing was found, 1
otherwise. ``tests/test_hardening.py`` runs it against a real server.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import probe_fhir_review  # noqa: E402  (bench/ is not a package)

ROOT = Path(__file__).resolve().parent.parent
MAX_ERROR_BODY = 64 * 1024
# What `serve` writes for a request: "INFO:     POST /v1/evaluations 201 key=… 4.2ms".
ACCESS_LINE = re.compile(r"^INFO: +(?P<method>[A-Z]+) (?P<path>.*) (?P<status>\d{3}) key=(?P<key>\S+) \d+\.\dms$")
FORGED_PATHS = [
    "/x%0AINFO:%20%20%20%20%20POST%20/v1/evaluations%20201%20key=6addceaacb80ddaa%204.2ms",
    "/x%0D%0AINFO:%20%20%20%20%20GET%20/health%20200%20key=-%200.1ms",
    "/nul%00byte",
    "/bidi%E2%80%AEfdp.exe",
    "/escape%1B%5B31mred",
    "/v1/evaluations/%0Afake",
]


@dataclass
class Probe:
    base_url: str
    intake_key: str
    reviewer_key: str
    case: dict[str, Any]
    requests: int = 0
    problems: list[str] = field(default_factory=list)

    def send(self, name: str, method: str, path: str, *, key: str | None = None, body: bytes | None = None,
             headers: dict[str, str] | None = None, expect: set[int] | None = None,
             names: str | None = None, http: httpx.Client | None = None, data: dict[str, str] | None = None,
             kind: str = "json") -> httpx.Response:
        """Send one request and check the answer; ``names``: a field a 422 must name; ``kind``: what
        an error body must be (``json``, ``fhir``: an OperationOutcome, ``html``: a page); ``http``:
        a client keeping cookies (the review page); ``data``: a form."""
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if key:
            all_headers["X-API-Key"] = key
        if data is not None:
            all_headers.pop("Content-Type")
        self.requests += 1
        with httpx.Client(base_url=self.base_url, timeout=60) as own:
            client = http or own
            # A raw path: httpx must not re-encode what the probe percent-encoded on purpose.
            request = client.build_request(method, self.base_url + path, content=body, data=data,
                                           headers=all_headers)
            response = client.send(request)
        if kind == "fhir":
            probe_fhir_review.check_outcome(self, name, response, expect)
            return response
        if kind == "html":
            probe_fhir_review.check_page(self, name, response, expect)
            return response
        self._check(name, response, expect)
        if names and response.status_code == 422 and names not in [e["field"] for e in response.json()["errors"]]:
            self.problems.append(f"{name}: the 422 does not name {names}: {response.text[:200]}")
        return response

    def _check(self, name: str, response: httpx.Response, expect: set[int] | None) -> None:
        status = response.status_code
        if status >= 500:
            self.problems.append(f"{name}: {status}")
        if expect is not None and status not in expect:
            self.problems.append(f"{name}: status {status}, expected one of {sorted(expect)}")
        if status < 400 or response.request.method == "HEAD":
            return
        if len(response.content) > MAX_ERROR_BODY:
            self.problems.append(f"{name}: error body of {len(response.content)} bytes")
        try:
            body = response.json()
        except ValueError:
            self.problems.append(f"{name}: error body is not JSON: {response.content[:80]!r}")
            return
        if not isinstance(body, dict) or not body.get("detail"):
            self.problems.append(f"{name}: error body without detail")
        if status == 422:
            errors = body.get("errors") or []
            if not errors or not all(e.get("field") and e.get("message") for e in errors):
                self.problems.append(f"{name}: a 422 that does not name its field: {body}")

    def hang_up_mid_body(self) -> None:
        """Declare a body, send part of it, close the connection."""
        parts = urlsplit(self.base_url)
        self.requests += 1
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
            connection.sendall(
                b"POST /v1/evaluations HTTP/1.1\r\nHost: probe\r\nContent-Type: application/json\r\n"
                + f"X-API-Key: {self.intake_key}\r\nContent-Length: 100000\r\n\r\n".encode()
                + b'{"external_id": "HANG-UP", "patient": {'
            )
            time.sleep(0.3)


def run_probes(probe: Probe) -> None:
    intake, reviewer = probe.intake_key, probe.reviewer_key
    case_bytes = json.dumps(probe.case).encode()
    for path in FORGED_PATHS:
        probe.send(f"forged path {path[:20]}", "GET", path, key=intake, expect={404})

    bodies = {
        "deep nesting": (b"[" * 10_000 + b"]" * 10_000, "body"),
        "5000-digit number": (b'{"external_id": "X", "patient": {"age_years": ' + b"9" * 5000 + b"}}", "body"),
        "not UTF-8": (b'{"external_id": "\xff\xfe"}', "body"),
        "UTF-16": ('{"external_id": "X"}'.encode("utf-16"), "body"),
        "repeated key": (b'{"external_id": "A", "external_id": "B"}', "external_id"),
        "repeated nested key": (
            b'{"external_id": "A", "low_back_pain": {"nrs": 7, "nrs": 2}}', "low_back_pain.nrs"),
        "NaN": (b'{"external_id": "X", "low_back_pain": {"nrs": NaN}}', "low_back_pain.nrs"),
        "Infinity": (b'{"external_id": "X", "patient": {"bmi": Infinity}}', "patient.bmi"),
        "truncated": (case_bytes[:-5], "body"),
        "empty": (b"", "body"),
    }
    for name, (body, field_name) in bodies.items():
        probe.send(name, "POST", "/v1/evaluations", key=intake, body=body, expect={422}, names=field_name)

    for name, change, field_name in [
        ("blank external_id", {"external_id": " "}, "external_id"),
        ("padded external_id", {"external_id": "  X-1  "}, "external_id"),
        ("C1 control in external_id", {"external_id": "X\u0085Y"}, "external_id"),
        ("bidi and zero-width in external_id", {"external_id": "X-1\u202e\u200b"}, "external_id"),
        ("basic-format service_date", {"service_date": "20261201"}, "service_date"),
        ("week-date service_date", {"service_date": "2026-W48-2"}, "service_date"),
    ]:
        probe.send(name, "POST", "/v1/evaluations", key=intake, body=json.dumps({**probe.case, **change}).encode(),
                   expect={422}, names=field_name)

    # Just under the default 1 MiB body limit: ~90,000 unknown fields, each an error.
    unknown = {"external_id": "AMPLIFY", **{f"f{i}": 0 for i in range(90_000)}}
    response = probe.send("90,000 unknown fields", "POST", "/v1/evaluations", key=intake,
                          body=json.dumps(unknown, separators=(",", ":")).encode(), expect={413, 422})
    if response.status_code == 422 and response.json().get("error_count") != 90_000:
        probe.problems.append(f"90,000 unknown fields: error_count {response.json().get('error_count')}")

    for name, value in {"control character": "a\x01b", "too long": "k" * 256, "space": "a b"}.items():
        probe.send(f"Idempotency-Key {name}", "POST", "/v1/evaluations", key=intake, body=case_bytes,
                   headers={"Idempotency-Key": value}, expect={422}, names="headers.idempotency-key")
    probe.send("text/plain body", "POST", "/v1/evaluations", key=intake, body=case_bytes,
               headers={"Content-Type": "text/plain"}, expect={422})

    first = probe.send("idempotent first", "POST", "/v1/evaluations", key=intake, body=case_bytes,
                       headers={"Idempotency-Key": "probe-retry-1"}, expect={201})
    again = probe.send("idempotent retry", "POST", "/v1/evaluations", key=intake, body=case_bytes,
                       headers={"Idempotency-Key": "probe-retry-1"}, expect={201})
    if first.status_code == again.status_code == 201 and (
            again.content != first.content or again.headers.get("idempotent-replayed") != "true"):
        probe.problems.append("idempotent retry: not the first response replayed")
    probe.send("idempotent other body", "POST", "/v1/evaluations", key=intake, body=case_bytes + b" ",
               headers={"Idempotency-Key": "probe-retry-1"}, expect={409})

    external_id = probe.case.get("external_id", "X")
    for name, query in {
        "limit 0": "limit=0", "limit 501": "limit=501", "limit text": "limit=many",
        "forged cursor": "cursor=AAAA", "cursor with NUL": "cursor=%00", "cursor not base64": "cursor=%E2%80%AE",
    }.items():
        probe.send(name, "GET", f"/v1/evaluations?external_id={external_id}&{query}", key=reviewer, expect={422},
                   names=f"query.{query.split('=')[0]}")
    probe.send("external_id with NUL", "GET", "/v1/evaluations?external_id=%00", key=reviewer, expect={200, 422})

    for path in ("/health/", "/v1/policies/", "/v1/evaluations/"):
        probe.send(f"trailing slash {path}", "GET", path, key=intake, expect={404})
    probe.send("HEAD /health", "HEAD", "/health", expect={200})
    probe.send("readiness", "GET", "/health/ready", expect={200})
    probe.hang_up_mid_body()
    probe_fhir_review.run_fhir_probes(probe)
    probe_fhir_review.run_review_probes(probe)  # last: it spends the sign-in limit of this address


def check_log(lines: list[str], requests: int) -> list[str]:
    """Problems in what the server logged while the probes ran."""
    problems = []
    access = 0
    for line in lines:
        if any(patient in line for patient in probe_fhir_review.PATIENT_IDS):
            problems.append(f"a patient id in the log: {line[:120]!r}")
        if not (line.isascii() and line.isprintable()):
            problems.append(f"log line not printable ASCII: {line[:120]!r}")
        if "Traceback" in line or "Exception in ASGI" in line:
            problems.append(f"traceback in the log: {line[:120]!r}")
        if ACCESS_LINE.match(line):
            access += 1
        elif line.startswith(("INFO:", "WARNING:", "ERROR:")) and " " not in line.split(":", 1)[0]:
            problems.append(f"unexpected log line: {line[:120]!r}")
        else:
            problems.append(f"a line that continues another: {line[:120]!r}")
    if access != requests:
        problems.append(f"{access} access lines for {requests} requests: a line was forged or lost")
    return problems


def read_new_lines(log: Path, offset: int, expected: int, wait: float = 10.0) -> list[str]:
    """The lines written after ``offset``, once ``expected`` access lines are there (or ``wait`` s)."""
    deadline = time.monotonic() + wait
    while True:
        text = log.read_bytes()[offset:].decode("utf-8", "backslashreplace")
        lines = text.splitlines()  # also splits on \r, \x0b, \x1c…: a forged break shows as a line
        if sum(bool(ACCESS_LINE.match(line)) for line in lines) >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--intake-key", required=True)
    parser.add_argument("--reviewer-key", required=True)
    parser.add_argument("--log", type=Path, help="the server's log file, to check what it wrote")
    parser.add_argument("--case", type=Path, default=ROOT / "examples" / "case.json")
    args = parser.parse_args(argv)
    offset = args.log.stat().st_size if args.log else 0
    probe = Probe(args.base_url.rstrip("/"), args.intake_key, args.reviewer_key, json.loads(args.case.read_text()))
    run_probes(probe)
    if args.log:
        probe.problems += check_log(read_new_lines(args.log, offset, probe.requests), probe.requests)
    print(json.dumps({"requests": probe.requests, "problems": probe.problems}, indent=2))
    return 1 if probe.problems else 0


if __name__ == "__main__":
    sys.exit(main())
