"""The review page in a real headless Chromium (Debian's, driven by Playwright) against a real
server on loopback: sign in, search, open a review, add a note, print to PDF, sign out; keyboard
only; and axe-core (shipped by the axe-playwright-python package) run in that browser.

Skipped, saying why, where /usr/bin/chromium or Playwright is missing; .ci/run installs Chromium.
"""

import re
import shutil
import subprocess

import pytest

from review_browser import chromium, missing_browser, review_server, sign_in

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=missing_browser() or "")

SERIOUS = {"serious", "critical"}


def shown(locator) -> str:
    """The element's text as read: whitespace runs (layout line breaks) as one space."""
    return " ".join(locator.inner_text().split())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with review_server(tmp_path_factory.mktemp("review-browser"), notes=True) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    with chromium() as running:
        yield running


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    yield page
    context.close()


def test_sign_in_search_review_note_print_and_sign_out(page, server, tmp_path):
    review_url = server.url(f"/review/evaluations/{server.evaluation_id}")

    # Without a session: the sign-in form, and nothing of the case.
    page.goto(review_url)
    assert page.url.startswith(server.url("/review?next="))
    assert server.external_id not in page.content()
    assert page.locator("h1").inner_text() == "Sign in to review"

    # Sign in, then back at the page asked for; search from there.
    page.fill("#key", server.reviewer_key)
    page.click("button:has-text('Sign in')")
    assert page.url == review_url
    page.click("text=Search evaluations")
    page.fill("#external_id", server.external_id)
    page.click("button:has-text('Search')")
    rows = page.locator("table.results tbody tr")
    assert rows.count() == 1
    assert "At least one criterion not met" in rows.first.inner_text()

    # Open the review summary.
    rows.first.locator("a").click()
    assert page.url == review_url
    assert page.locator("h1").inner_text().startswith("Review summary")
    assert page.locator("article.finding h3").count() == 13 + 7
    assert "Draft criteria" in page.locator(".banner").inner_text()
    assert shown(page.locator("#ISASS-RN-04 .status-badge")) == "✗ Not met"
    assert shown(page.locator("#ISASS-RN-10 .status-badge")) == "? Insufficient information"
    assert shown(page.locator("#ISASS-RN-01 .status-badge")) == "✓ Met"
    assert page.locator("article.finding").nth(13).get_attribute("id") == "TRIAL-BMI"  # present flags first

    # Add a note holding markup: it is shown as text and nothing runs.
    hostile = "<script>window.__injected = 1; alert('x')</script><img src=x onerror=alert(2)> imaging awaited"
    page.select_option("#note-criterion", "ISASS-RN-09")
    page.fill("#note-text", hostile)
    page.click("button:has-text('Add note')")
    note = page.locator("#ISASS-RN-09 .note-text")
    assert note.inner_text() == hostile
    assert page.locator("script").count() == 0
    assert page.locator(".note-text img").count() == 0
    assert page.evaluate("window.__injected") is None
    assert page.dialogs == []

    # Print: the case-file PDF has the findings and the note, not the page's controls.
    pdf = tmp_path / "review.pdf"
    page.pdf(path=str(pdf), format="A4", print_background=True)
    assert pdf.read_bytes().startswith(b"%PDF")
    page.emulate_media(media="print")
    assert not page.locator("#add-note").is_visible()
    assert not page.locator(".account").is_visible()
    assert page.locator("#ISASS-RN-09 .note-text").is_visible()
    page.emulate_media(media="screen")
    if shutil.which("pdftotext"):
        printed = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        assert "Review summary" in printed and server.external_id in printed
        assert "imaging awaited" in printed
        assert "not a coverage decision" in printed
        assert "Sign out" not in printed and "Add a note" not in printed
        assert re.search(r"Page 1 of \d+", printed)

    # Sign out: the session is gone, the page asks for a key again.
    page.click("button:has-text('Sign out')")
    assert page.locator("[role=status]").inner_text() == "You have signed out."
    assert not [c for c in page.context.cookies() if c["name"] == "cc_review_session"]
    page.goto(review_url)
    assert page.url.startswith(server.url("/review?next="))
    assert server.external_id not in page.content()


def test_the_session_cookie_is_httponly_and_samesite_strict_in_the_browser(page, server):
    sign_in(page, server)

    cookie = next(c for c in page.context.cookies() if c["name"] == "cc_review_session")

    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/review"
    assert cookie["expires"] > 0  # expiring, not a cookie for ever
    assert page.evaluate("document.cookie") == ""


def test_an_intake_key_cannot_sign_in_in_the_browser(page, server):
    sign_in(page, server, key=server.intake_key)

    assert "only reviewer keys can sign in" in page.locator("[role=alert]").inner_text()
    assert not [c for c in page.context.cookies() if c["name"] == "cc_review_session"]
    page.goto(server.url("/review/evaluations"))
    assert page.url.startswith(server.url("/review?next="))


def active(page, selector: str) -> bool:
    return page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector)


def tab_to(page, selector: str, limit: int = 400) -> None:
    for _ in range(limit):
        if active(page, selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def press_and_wait(page, key: str) -> None:
    with page.expect_navigation():
        page.keyboard.press(key)


def test_keyboard_only_sign_in_search_open_and_note(page, server):
    page.goto(server.url("/review"))
    page.keyboard.press("Tab")
    assert active(page, ".skip-link")  # the first stop: skip the masthead
    assert page.evaluate("getComputedStyle(document.activeElement).top") != "-48px"  # shown when focused
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert active(page, "#key")
    page.keyboard.type(server.reviewer_key)
    press_and_wait(page, "Enter")
    assert page.url == server.url("/review/evaluations")

    tab_to(page, "#external_id")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # focus is visible
    page.keyboard.type(server.external_id)
    press_and_wait(page, "Enter")
    tab_to(page, "table.results a")
    press_and_wait(page, "Enter")
    assert re.fullmatch(r".*/review/evaluations/[0-9a-f-]{36}", page.url)

    tab_to(page, "a[href='?note_on=ISASS-RN-02#add-note']")
    press_and_wait(page, "Enter")
    assert page.locator("#note-criterion").input_value() == "ISASS-RN-02"
    tab_to(page, "#note-text")
    page.keyboard.type("Typed with the keyboard alone.")
    page.keyboard.press("Tab")
    assert active(page, "button[type=submit]")
    press_and_wait(page, "Enter")
    assert "Typed with the keyboard alone." in page.locator("#ISASS-RN-02 .note-text").inner_text()


def axe_findings(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in SERIOUS
    ]


def structure_problems(page) -> list[str]:
    """Headings in order (one h1, no level skipped) and a label for every form control."""
    return page.evaluate(
        """() => {
          const problems = [];
          const levels = [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => +h.tagName[1]);
          if (levels.filter(l => l === 1).length !== 1) problems.push('h1 count ' + levels.filter(l => l === 1).length);
          levels.forEach((level, i) => { if (i && level > levels[i - 1] + 1) problems.push('h' + levels[i - 1] + ' then h' + level); });
          for (const control of document.querySelectorAll('input:not([type=hidden]),select,textarea')) {
            if (!control.labels || control.labels.length === 0) problems.push('no label: ' + (control.id || control.name));
          }
          return problems;
        }"""
    )


def test_axe_finds_no_serious_violation_and_the_structure_is_sound(page, server):
    page.goto(server.url("/review"))
    checked = {"sign-in": (axe_findings(page), structure_problems(page))}
    sign_in(page, server, key="cc_wrong")  # the form with its error message
    checked["sign-in error"] = (axe_findings(page), structure_problems(page))
    sign_in(page, server)
    page.goto(server.url(f"/review/evaluations?external_id={server.external_id}"))
    checked["search"] = (axe_findings(page), structure_problems(page))
    page.goto(server.url(f"/review/evaluations/{server.evaluation_id}"))
    checked["review"] = (axe_findings(page), structure_problems(page))
    page.fill("#note-text", "   ")
    page.evaluate("document.querySelector('#note-text').removeAttribute('required')")
    page.click("button:has-text('Add note')")
    assert "The note was not added" in page.content()
    checked["review with a refused note"] = (axe_findings(page), structure_problems(page))
    page.emulate_media(media="print")
    checked["review, print"] = (axe_findings(page), [])

    assert {name: found for name, found in checked.items() if found != ([], [])} == {}
