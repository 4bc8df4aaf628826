"""A reviewer's day on the review page, in Debian's Chromium driven by Playwright against a real
server (issue 18 item 3, issue 19 item 2): sign in and land on the work queue in due order,
filter it, take a request, open it, see submission 3 of 3 and what changed, add a note after the
session ended without losing it, record a determination, print to PDF (the reference and page
number on every page), release the request. axe-core finds no violation of any impact on any of
these states, the queue at 320 px included.

Skipped, saying why, where /usr/bin/chromium or Playwright is missing."""

import re
import shutil

import pytest

from review_browser import (
    a_day_of_requests, chromium, end_sessions, missing_browser, pdf_pages, review_server,
)
from test_review_browser import NARROW, axe_violations, focus_moves_to, new_page, shown, structure_problems

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=missing_browser() or "")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with review_server(tmp_path_factory.mktemp("review-day")) as running:
        running.day = a_day_of_requests(running)
        yield running


@pytest.fixture(scope="module")
def browser():
    with chromium() as running:
        yield running


def queue_order(page) -> list[str]:
    return [shown(cell).split(",")[0].strip() for cell in page.locator("td[data-label=Request] a").all()]


def test_a_reviewers_day(browser, server, tmp_path):
    page = new_page(browser)
    found: dict[str, tuple[list[str], list[str]]] = {}

    def check(state: str) -> None:
        found[state] = (axe_violations(page), structure_problems(page))

    # Sign in: the work queue, open requests, the soonest due first.
    page.goto(server.url("/review"))
    page.fill("#key", server.reviewer_key)
    page.click("button:has-text('Sign in')")
    assert page.url == server.url("/review/queue")
    assert queue_order(page) == ["LATE-1", "REQ-THREE", "EXP-2", "INTAKE-2026-000123", "STD-1", "std-3"]
    late = page.locator("tbody tr").first
    assert re.search(r"⚠ Overdue by 1 day 3 h", shown(late.locator("td[data-label=Due]")))
    assert shown(page.locator("tbody tr").nth(1).locator("td[data-label=Priority]")) == "» Expedited"
    assert shown(page.locator("tbody tr").nth(1).locator("td[data-label=Submissions]")) == "3"
    check("queue")

    # Filter: expedited only, then a reference prefix in any case.
    page.select_option("#priority", "expedited")
    page.click("button:has-text('Show')")
    assert queue_order(page) == ["REQ-THREE", "EXP-2"]
    check("queue, expedited")
    page.goto(server.url("/review/queue"))
    page.fill("#external_id", "req-")
    page.click("button:has-text('Show')")
    assert queue_order(page) == ["REQ-THREE"]

    # Take it: confirmed, and it is mine.
    page.click("button:has-text('Take REQ-THREE')")
    assert focus_moves_to(page, "#done")
    assert shown(page.locator("#done")) == "You took REQ-THREE."
    page.goto(server.url("/review/queue?assigned=me"))
    assert queue_order(page) == ["REQ-THREE"]
    check("queue, mine")

    # Open it: submission 3 of 3, every submission linked, and what changed.
    page.click("td[data-label=Request] a")
    assert page.url == server.url(f"/review/evaluations/{server.day['REQ-THREE'][2]}")
    assert shown(page.locator("#request-heading")) == "Submission 3 of 3"
    assert page.locator(".submissions li a").count() == 2
    check("review, submission 3 of 3")
    page.click("a:has-text('What changed in submission 3 since submission 2')")
    assert "Back pain NRS low_back_pain.nrs 5 7" in shown(page.locator("table.changes").first)
    assert "ISASS-RN-04 Severe pain ✗ Not met ✓ Met" in shown(page.locator("#criteria-heading + table"))
    check("what changed")
    page.click("a:has-text('submission 2')")
    assert "A newer submission of this request exists" in shown(page.locator(".banner-newer"))
    check("review, submission 2 of 3 with a newer one")
    page.click(".banner-newer a")

    # A note typed as the session ended: kept through signing in again, then added.
    text = "Asked the surgeon's office whether spine surgery is indicated.\nAnswer promised today."
    page.fill("#note-text", text)
    end_sessions(server)
    page.click("button:has-text('Add note')")
    assert focus_moves_to(page, "#session-ended")
    check("sign-in keeping a note")
    page.fill("#key", server.reviewer_key)
    page.click("button:has-text('Sign in and add the note')")
    assert focus_moves_to(page, "#note-saved")
    assert page.locator("#notes .note-text").last.inner_text() == text
    check("review, note added")

    # Decide: a referral, which leaves the request open; shown on the summary.
    page.check("#outcome-referred_to_physician_reviewer")
    page.fill("#reason", "Spine surgery candidacy is a physician's call; referred for peer review.")
    page.check("#attestation")
    page.click("button:has-text('Record the determination')")
    assert focus_moves_to(page, "#recorded")
    assert "Referred to a physician reviewer" in shown(page.locator("#determinations"))
    check("review, determination recorded")

    # Print: the reference, the time and the page number on every page; the determination too.
    if shutil.which("pdftotext"):
        pdf = tmp_path / "req-three.pdf"
        page.pdf(path=str(pdf), prefer_css_page_size=True, print_background=True)
        pages = pdf_pages(pdf)
        for number, printed in enumerate(pages, start=1):
            assert "REQ-THREE · Review summary" in printed and f"Page {number} of {len(pages)}" in printed
        everything = "\n".join(pages)
        assert "Submission 3 of 3" in everything and "Referred to a physician reviewer" in everything
        assert "Record the determination" not in everything and "Release" not in everything  # no controls
    page.emulate_media(media="print")
    check("review, printed")
    page.emulate_media(media="screen")

    # Release it: confirmed, and nobody has it.
    page.click("button:has-text('Release REQ-THREE')")
    assert focus_moves_to(page, "#done")
    assert shown(page.locator("#done")) == "You released REQ-THREE."
    check("review, released")
    page.goto(server.url("/review/queue?assigned=none&external_id=REQ"))
    assert queue_order(page) == ["REQ-THREE"]
    assert "Referred to a physician reviewer" in shown(page.locator("td[data-label=Determination]"))
    page.context.close()

    # The queue at 320 px: no sideways scrolling, and axe finds nothing.
    narrow = new_page(browser, NARROW)
    narrow.goto(server.url("/review"))
    narrow.fill("#key", server.reviewer_key)
    narrow.click("button:has-text('Sign in')")
    narrow.wait_for_url("**/review/queue**")  # measured once signing in has landed on the queue
    assert narrow.evaluate("document.documentElement.scrollWidth") == 320
    page = narrow
    check("queue at 320 px")
    narrow.goto(server.url(f"/review/evaluations/{server.day['REQ-THREE'][2]}/changes"))
    assert narrow.evaluate("document.documentElement.scrollWidth") == 320
    check("what changed at 320 px")
    narrow.context.close()

    assert {state: problems for state, problems in found.items() if problems != ([], [])} == {}
