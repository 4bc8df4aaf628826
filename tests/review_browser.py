"""A real ``coverage-criteria serve`` with reviewer data, and Debian's Chromium driven by
Playwright, for the review page's browser tests and its screenshots (tests/review_screenshots.py).

Chromium comes from Debian (``apt-get install chromium``), never from ``playwright install``.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

from servers import ROOT, start_server
from service.store.database import Database
from service.store.keys import create_key

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    return None


@contextmanager
def chromium() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class ReviewServer:
    base_url: str
    reviewer_key: str
    reviewer_key_id: str
    intake_key: str
    evaluation_id: str
    external_id: str
    database_url: str
    bundle_evaluation_id: str  # examples/bundle.json: FHIR evidence, an old Procedure, CPT 64568


    def url(self, path: str) -> str:
        return self.base_url + path


def example_case() -> dict:
    """The README's example case, changed so the summary shows every status: ISASS-RN-04 not
    met (NRS 5), ISASS-RN-10 not documented, and the trial BMI flag present (37.5)."""
    case = json.loads((ROOT / "examples" / "case.json").read_text())
    case["patient"]["bmi"] = 37.5
    case["low_back_pain"]["nrs"] = 5
    del case["surgery"]["spine_surgery_indicated"]
    return case


@contextmanager
def review_server(data_dir: Path, notes: bool = False) -> Iterator[ReviewServer]:
    """A server on loopback with a reviewer key, an intake key and one stored evaluation."""
    url = f"sqlite:///{data_dir / 'coverage-criteria.db'}"
    database = Database(url)
    database.migrate()
    reviewer_key_id, reviewer_key = create_key(database, "reviewer", label="UM nurse reviewer")
    _, intake_key = create_key(database, "intake", label="intake system")
    database.dispose()
    env = {
        **os.environ,
        "COVERAGE_CRITERIA_DATA_DIR": str(data_dir),
        "COVERAGE_CRITERIA_DATABASE_URL": url,
    }
    env.pop("COVERAGE_CRITERIA_RULES_DIR", None)
    server, base_url = start_server(env, data_dir / "server.log")
    try:
        case = example_case()
        response = httpx.post(f"{base_url}/v1/evaluations", json=case, headers={"X-API-Key": intake_key})
        response.raise_for_status()
        evaluation_id = response.json()["evaluation_id"]
        bundle = httpx.post(
            f"{base_url}/v1/evaluations",
            content=(ROOT / "examples" / "bundle.json").read_bytes(),
            headers={"X-API-Key": intake_key, "Content-Type": "application/fhir+json"},
        )
        bundle.raise_for_status()
        if notes:
            for criterion, text in (
                ("ISASS-RN-04", "Pain diary for October shows NRS 5 to 7; asked the clinic for the latest visit note."),
                (None, "Peer-to-peer call offered to the ordering surgeon; imaging report to follow."),
            ):
                httpx.post(
                    f"{base_url}/v1/evaluations/{evaluation_id}/notes",
                    json={"criterion": criterion, "text": text},
                    headers={"X-API-Key": reviewer_key},
                ).raise_for_status()
        yield ReviewServer(
            base_url, reviewer_key, reviewer_key_id, intake_key, evaluation_id, case["external_id"], url,
            bundle.json()["evaluation_id"],
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def sign_in(page, server: ReviewServer, key: str | None = None) -> None:
    page.goto(server.url("/review"))
    page.fill("#key", key or server.reviewer_key)
    with page.expect_navigation():
        page.press("#key", "Enter")


def a_day_of_requests(server: ReviewServer) -> dict[str, list[str]]:
    """A reviewer's morning: REQ-THREE submitted three times (NRS 4, 5, then 7 with the spine
    surgery question unanswered), four other requests of either priority, and LATE-1 past its
    due time. Returns each reference's evaluation ids, oldest first."""
    import datetime

    from sqlalchemy import update

    from service.store.requests import Request
    from service.store.tables import utc_now

    made: dict[str, list[str]] = {}

    def submit(case: dict) -> None:
        response = httpx.post(server.url("/v1/evaluations"), json=case, headers={"X-API-Key": server.intake_key})
        response.raise_for_status()
        made.setdefault(case["external_id"], []).append(response.json()["evaluation_id"])

    for nrs in (4, 5, 7):
        case = example_case()
        case.update(external_id="REQ-THREE", priority="expedited")
        case["low_back_pain"]["nrs"] = nrs
        case["surgery"]["spine_surgery_indicated"] = False
        if nrs == 7:
            del case["surgery"]["spine_surgery_indicated"]
        submit(case)
    for external_id, priority in (("STD-1", "standard"), ("EXP-2", "expedited"), ("std-3", "standard"), ("LATE-1", "standard")):
        submit({**example_case(), "external_id": external_id, "priority": priority})
    database = Database(server.database_url)
    try:
        with database.transaction() as session:
            late = utc_now() - datetime.timedelta(days=1, hours=3)
            session.execute(update(Request).where(Request.external_id == "LATE-1")
                            .values(due_at=late, received_at=late - datetime.timedelta(days=7)))
    finally:
        database.dispose()
    return made


def open_session_for(page, server: ReviewServer) -> None:
    """Sign ``page`` in without the form: a session made in the database, its cookie set in the
    browser. For tests about something else than signing in, which the sign-in limit (10 attempts
    a minute from one address) would otherwise hold up."""
    from service.review.sessions import SESSION_COOKIE
    from service.review.store import open_session

    database = Database(server.database_url)
    try:
        token = open_session(database, server.reviewer_key_id)
    finally:
        database.dispose()
    host = server.base_url.split("//", 1)[1].split(":", 1)[0]
    page.context.add_cookies(  # as the server sets it, so its own Set-Cookie replaces this one
        [{"name": SESSION_COOKIE, "value": token, "domain": host, "path": "/review", "httpOnly": True, "sameSite": "Strict"}]
    )


def end_sessions(server: ReviewServer) -> None:
    """Every review session ends now, as after 30 idle minutes (the server reads the same database)."""
    from sqlalchemy import update

    from service.review.store import ReviewSession
    from service.store.tables import utc_now

    database = Database(server.database_url)
    try:
        with database.transaction() as session:
            session.execute(update(ReviewSession).values(expires_at=utc_now()))
    finally:
        database.dispose()


def pdf_pages(pdf: Path) -> list[str]:
    """The PDF's text, page by page (pdftotext, from poppler-utils)."""
    import subprocess

    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return [page for page in text.split("\f") if page.strip()]


def pdf_page_size(pdf: Path) -> str:
    """``612 x 792`` (US Letter) or ``595.276 x 841.89`` (A4), in points (pdfinfo)."""
    import re
    import subprocess

    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return re.search(r"Page size:\s+([\d.]+ x [\d.]+) pts", info).group(1)


def pdf_to_png(pdf: Path, png: Path, resolution: int = 110) -> None:
    """The PDF's first page as a PNG (pdftoppm, from poppler-utils)."""
    import subprocess

    if shutil.which("pdftoppm") is None:
        raise RuntimeError("pdftoppm is missing (Debian: apt-get install -y poppler-utils)")
    stem = png.with_suffix("")
    subprocess.run(["pdftoppm", "-png", "-r", str(resolution), "-f", "1", "-l", "1", "-singlefile", str(pdf), str(stem)], check=True)
