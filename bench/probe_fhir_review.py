"""The hostile probe's FHIR and review-page part (issue 16): what ``probe_hostile.py`` sends to
``POST /v1/evaluations`` as FHIR Bundles and to ``/review``, and how it checks the answers.

FHIR: a Bundle padded to just under 1 MiB with empty entries (refused, ``too-costly``), dates at
the ends of the calendar (read, or refused naming the element), two patients without ids, an
invalid ``Bundle.type``, entries that are not objects, unreadable JSON. Every error must be an
OperationOutcome (``application/fhir+json``) whose error issues each say what is wrong.

Review page: a forged CSRF token, open-redirect targets after a real sign-in, pages without a
session, and last the sign-in limit against a client rotating ``X-Forwarded-For`` from this
address (the server must not believe the header from a peer it does not list as a proxy).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
FHIR = {"Content-Type": "application/fhir+json"}
MIB = 1024 * 1024
# Patient ids the probes send; none may appear in the server's log.
PATIENT_IDS = ("PROBE-PATIENT-7731", "PROBE-PATIENT-9902")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SIGN_IN_ATTEMPTS = 11  # one more than the review page allows an address in a minute


def check_outcome(probe: Any, name: str, response: httpx.Response, expect: set[int] | None) -> None:
    """A FHIR request's answer: never a 5xx; an error is an OperationOutcome whose error issues
    each have a code and a diagnostic."""
    status = response.status_code
    if status >= 500:
        probe.problems.append(f"{name}: {status}")
    if expect is not None and status not in expect:
        probe.problems.append(f"{name}: status {status}, expected one of {sorted(expect)}: {response.text[:200]}")
    if status < 400:
        return
    if not response.headers.get("content-type", "").startswith("application/fhir+json"):
        probe.problems.append(f"{name}: a FHIR error that is not application/fhir+json")
    try:
        body = response.json()
    except ValueError:
        probe.problems.append(f"{name}: a FHIR error body that is not JSON")
        return
    issues = body.get("issue") if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" else None
    if not issues or not all(i.get("code") and i.get("diagnostics") for i in issues if i.get("severity") == "error"):
        probe.problems.append(f"{name}: not an OperationOutcome with its issues: {response.text[:200]}")


def check_page(probe: Any, name: str, response: httpx.Response, expect: set[int] | None) -> None:
    """A review page's answer: never a 5xx; an error is an HTML page."""
    status = response.status_code
    if status >= 500:
        probe.problems.append(f"{name}: {status}")
    if expect is not None and status not in expect:
        probe.problems.append(f"{name}: status {status}, expected one of {sorted(expect)}")
    if status >= 400 and not response.headers.get("content-type", "").startswith("text/html"):
        probe.problems.append(f"{name}: a review page error that is not HTML")


def _example() -> dict[str, Any]:
    bundle = json.loads((ROOT / "examples" / "bundle.json").read_text())
    for entry in bundle["entry"]:  # the probe's own patient id, which the log must never show
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            resource["id"] = PATIENT_IDS[0]
        for element in ("subject", "patient", "beneficiary"):
            if isinstance(resource.get(element), dict):
                resource[element] = {"reference": f"Patient/{PATIENT_IDS[0]}"}
    return bundle


def _with(bundle: dict[str, Any], resource_id: str, **changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(bundle)
    for entry in changed["entry"]:
        if entry["resource"].get("id") == resource_id:
            entry["resource"].update(changes)
    return changed


def run_fhir_probes(probe: Any) -> None:
    intake = probe.intake_key
    example = _example()

    def post(name: str, bundle: Any, expect: set[int]) -> httpx.Response:
        body = bundle if isinstance(bundle, bytes) else json.dumps(bundle, separators=(",", ":")).encode()
        return probe.send(f"FHIR {name}", "POST", "/v1/evaluations", key=intake, body=body, headers=FHIR,
                          expect=expect, kind="fhir")

    post("example Bundle", example, {201})
    padded = copy.deepcopy(example)
    room = MIB - 1024 - len(json.dumps(example, separators=(",", ":")))
    padded["entry"] += [{}] * (room // 3)
    answer = post("1 MiB of empty entries", padded, {422})
    if answer.status_code == 422 and "too-costly" not in answer.text:
        probe.problems.append("FHIR 1 MiB of empty entries: refused, but not as too-costly")

    for value, expect in (("0001-01-01T00:00:00+14:00", {201}), ("9999-12-31T23:59:59-14:00", {201}),
                          ("0000-01-01T00:00:00Z", {422}), ("2026-02-30", {422}), ("2026-13-01T00:00:00Z", {422}),
                          ("2016-12-31T23:59:60Z", {201})):
        answer = post(f"effectiveDateTime {value}", _with(example, "pain-1", effectiveDateTime=value), expect)
        if answer.status_code == 422 and "effective" not in answer.text:
            probe.problems.append(f"FHIR effectiveDateTime {value}: the OperationOutcome does not name the element")
    post("service date at year 1", _with(example, "reactiv8-implant-1", occurrenceDateTime="0001-01-01"), {201, 422})
    post("service date at year 9999", _with(example, "reactiv8-implant-1", occurrenceDateTime="9999-12-31"),
         {201, 422})

    two = copy.deepcopy(example)
    for entry in two["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            del entry["resource"]["id"]
    two["entry"].append({"resource": {"resourceType": "Patient", "birthDate": "1990-01-01"}})
    answer = post("two Patients without ids", two, {422})
    other = _with(example, "bmi-1", subject={"reference": f"Patient/{PATIENT_IDS[1]}"})
    answer = post("an Observation about another patient", other, {422})
    if answer.status_code == 422 and "business-rule" not in answer.text:
        probe.problems.append("FHIR two patients: refused, but not as a business rule")

    answer = post("invalid Bundle.type", {**example, "type": "bogus"}, {422})
    if answer.status_code == 422 and '"Bundle.type"' not in answer.text:
        probe.problems.append("FHIR invalid Bundle.type: the OperationOutcome does not name Bundle.type")
    post("Bundle without a type", {k: v for k, v in example.items() if k != "type"}, {422})
    post("entries that are not objects", {**example, "entry": [1, "two", None]}, {422})
    post("unreadable JSON", b'{"resourceType": "Bundle", "entry": [', {400})
    post("repeated key", b'{"resourceType": "Bundle", "type": "collection", "type": "batch"}', {400, 422})
    post("not a Bundle", {"resourceType": "Patient", "id": PATIENT_IDS[1]}, {422})


def run_review_probes(probe: Any) -> None:
    reviewer = probe.reviewer_key
    with httpx.Client(base_url=probe.base_url, timeout=60) as browser:
        probe.send("review sign-in form", "GET", "/review", http=browser, kind="html", expect={200})
        probe.send("review sign-in with a forged CSRF token", "POST", "/review/sign-in", http=browser, kind="html",
                   data={"key": reviewer, "csrf_token": "forged", "next": "/review/evaluations"}, expect={403})
    for target in ("//evil.example/", "/\\evil.example", "https://evil.example/review/", "/review/../../x",
                   "/review/%0d%0aSet-Cookie:x=1"):
        with httpx.Client(base_url=probe.base_url, timeout=60) as browser:  # a new browser: not signed in
            form = probe.send("review sign-in form", "GET", "/review", http=browser, kind="html", expect={200})
            token = CSRF.search(form.text)
            answer = probe.send(f"review sign-in then {target[:24]}", "POST", "/review/sign-in", http=browser,
                                kind="html", data={"key": reviewer, "next": target,
                                                   "csrf_token": token.group(1) if token else ""},
                                expect={303, 429})
        location = answer.headers.get("location", "")
        if answer.status_code == 303 and (not location.startswith("/review/") or "//" in location
                                          or "\r" in location or "\n" in location):
            probe.problems.append(f"review sign-in: next={target!r} sent the reviewer to {location!r}")
    with httpx.Client(base_url=probe.base_url, timeout=60) as stranger:
        for path in ("/review/evaluations?external_id=" + PATIENT_IDS[1], "/review/evaluations/unknown",
                     "/review/evaluations/%0aINFO:forged"):
            answer = probe.send(f"review page without a session {path[:30]}", "GET", path, http=stranger,
                                kind="html", expect={303, 404})
            if PATIENT_IDS[1] in answer.headers.get("location", "") + answer.text:
                probe.problems.append(f"review page without a session echoes the query: {path}")
        probe.send("review note without a session", "POST", "/review/evaluations/x/notes", http=stranger,
                   kind="html", data={"csrf_token": "forged", "text": "x"}, expect={303, 403})
    _rotate_forwarded_for(probe)


def _rotate_forwarded_for(probe: Any) -> None:
    """Sign-in attempts with a new X-Forwarded-For each: from this address, which the server does not
    list as a proxy, they share one limit, so one of them must be refused (429)."""
    statuses = []
    with httpx.Client(base_url=probe.base_url, timeout=60) as browser:
        for index in range(SIGN_IN_ATTEMPTS):
            form = probe.send("review sign-in form", "GET", "/review", http=browser, kind="html", expect={200})
            token = CSRF.search(form.text)
            answer = probe.send("review sign-in with a rotated X-Forwarded-For", "POST", "/review/sign-in",
                                http=browser, kind="html", headers={"X-Forwarded-For": f"203.0.113.{index}"},
                                data={"key": "cc_wrong", "csrf_token": token.group(1) if token else "",
                                      "next": "/review/evaluations"}, expect={401, 429})
            statuses.append(answer.status_code)
    if 429 not in statuses:
        probe.problems.append(f"review sign-in: {SIGN_IN_ATTEMPTS} attempts with rotated X-Forwarded-For were "
                              "never limited: the header was believed from a peer that is not a listed proxy")
