"""The review page in a real headless Chromium (Debian's, driven by Playwright) against a real
server on loopback: sign in, search, open a review, add a note (also after the session ended),
print to PDF, sign out; keyboard only; the focus ring's contrast; no sideways scrolling at 320 px;
and axe-core (shipped by the axe-playwright-python package), run in that browser, finding no
violation of any impact on any page state.

Skipped, saying why, where /usr/bin/chromium or Playwright is missing; .ci/run installs Chromium.
"""

import re
import shutil

import pytest

from review_browser import (
    chromium, end_sessions, missing_browser, open_session_for, pdf_page_size, pdf_pages, review_server, sign_in,
)

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=missing_browser() or "")

NARROW = {"width": 320, "height": 800}  # WCAG reflow: 320 CSS px, i.e. 1280 px at 400 %, 640 px at 200 %


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


def new_page(browser, viewport=None):
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    return page


@pytest.fixture
def page(browser):
    page = new_page(browser)
    yield page
    page.context.close()


@pytest.fixture
def narrow_page(browser):
    page = new_page(browser, NARROW)
    yield page
    page.context.close()


def active(page, selector: str) -> bool:
    return page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector)


def focus_moves_to(page, selector: str) -> bool:
    """Whether focus lands on ``selector``: autofocus acts at the browser's next rendering step,
    just after the page has loaded, so wait for it a little."""
    from playwright.sync_api import TimeoutError as NotWithinTime

    try:
        page.wait_for_function("(s) => document.activeElement && document.activeElement.matches(s)", arg=selector, timeout=3000)
    except NotWithinTime:
        return False
    return True


def in_view(page, selector: str) -> bool:
    return page.evaluate(
        "(s) => { const r = document.querySelector(s).getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight; }",
        selector,
    )


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
    assert rows.count() == 2  # the plain case and the FHIR Bundle share the reference
    links = [shown(rows.nth(i).locator("a")) for i in range(2)]
    assert len(set(links)) == 2 and all(re.fullmatch(r"Evaluation [0-9a-f]{8} of \d+ \w{3} \d{4}, [\d:]{8} UTC", t) for t in links)
    assert rows.nth(0).locator("time").get_attribute("title") == rows.nth(0).locator("time .visually-hidden").inner_text().strip(" ()")

    # Open the review summary.
    rows.filter(has_text="At least one criterion not met").locator("a").click()
    assert page.url == review_url
    assert page.locator("h1").inner_text().startswith("Review summary")
    assert page.locator("article.finding h3").count() == 13 + 7
    assert "Draft criteria" in page.locator(".banner-draft").inner_text()
    assert shown(page.locator("#ISASS-RN-04 h3")) == "✗ Not met : ISASS-RN-04 Severe pain"
    assert shown(page.locator("#ISASS-RN-10 h3")).startswith("? Insufficient information : ISASS-RN-10")
    assert shown(page.locator("#ISASS-RN-01 h3")).startswith("✓ Met : ISASS-RN-01")
    assert page.locator("article.finding").nth(13).get_attribute("id") == "TRIAL-BMI"  # present flags first

    # Add a note holding markup: it is shown as text, nothing runs, and it is confirmed.
    hostile = "<script>window.__injected = 1; alert('x')</script><img src=x onerror=alert(2)> imaging awaited"
    page.select_option("#note-criterion", "ISASS-RN-09")
    page.fill("#note-text", hostile)
    page.click("button:has-text('Add note')")
    assert re.fullmatch(re.escape(review_url) + r"\?saved=\d+", page.url)
    assert focus_moves_to(page, "#note-saved") and in_view(page, "#note-saved")
    assert shown(page.locator("#note-saved")).startswith("Note added on ISASS-RN-09 at ")
    note = page.locator("#ISASS-RN-09 .note-text")
    assert note.inner_text() == hostile
    assert page.locator("#ISASS-RN-09 .note-meta").inner_text().endswith("UM nurse reviewer · on ISASS-RN-09")  # the key's name for people
    assert page.locator("script").count() == 0
    assert page.locator(".note-text img").count() == 0
    assert page.evaluate("window.__injected") is None
    assert page.dialogs == []

    # Print: the case-file PDF has the findings and the note, not the page's controls.
    pdf = tmp_path / "review.pdf"
    page.pdf(path=str(pdf), prefer_css_page_size=True, print_background=True)
    assert pdf.read_bytes().startswith(b"%PDF")
    page.emulate_media(media="print")
    assert not page.locator("#add-note").is_visible()
    assert not page.locator(".account").is_visible()
    assert page.locator("#ISASS-RN-09 .note-text").is_visible()
    page.emulate_media(media="screen")
    if shutil.which("pdftotext"):
        printed = "\n".join(pdf_pages(pdf))
        assert "Review summary" in printed and server.external_id in printed
        assert "imaging awaited" in printed
        assert "not a coverage decision" in printed
        assert "Sign out" not in printed and "Add a note" not in printed

    # Sign out: the session is gone, the page asks for a key again.
    page.click("button:has-text('Sign out')")
    assert page.locator("[role=status]").inner_text() == "You have signed out."
    assert not [c for c in page.context.cookies() if c["name"] == "cc_review_session"]
    page.goto(review_url)
    assert page.url.startswith(server.url("/review?next="))
    assert server.external_id not in page.content()


def test_a_note_typed_when_the_session_had_ended_is_kept_and_added_after_signing_in_again(page, server):
    review_url = server.url(f"/review/evaluations/{server.evaluation_id}")
    sign_in(page, server)
    page.goto(review_url)
    text = "Called the clinic at 10:40.\nImaging report promised by Friday; <b>not</b> yet received."
    page.select_option("#note-criterion", "ISASS-RN-08")
    page.fill("#note-text", text)

    end_sessions(server)  # the nurse was on the phone for 40 minutes
    page.click("button:has-text('Add note')")

    # The sign-in form, saying what happened, with the note kept: never raw JSON.
    assert page.locator("h1").inner_text() == "Sign in to review"
    assert "Method Not Allowed" not in page.content() and '{"detail"' not in page.content()
    assert focus_moves_to(page, "#session-ended")  # focus moves to the message, so it is read out
    assert "your note has not been added yet" in page.locator("#session-ended").inner_text()
    assert page.locator(".pending-note .note-text").inner_text() == text
    assert page.locator(".pending-note").inner_text().count("On ISASS-RN-08") == 1

    # A mistyped key first: the note is still kept.
    page.fill("#key", "cc_0123456789abcdef_" + "x" * 43)
    page.click("button:has-text('Sign in and add the note')")
    assert "That key was not accepted" in page.locator("#sign-in-error").inner_text()
    assert focus_moves_to(page, "#sign-in-error")
    assert page.locator(".pending-note .note-text").inner_text() == text

    page.fill("#key", server.reviewer_key)
    page.click("button:has-text('Sign in and add the note')")

    # Back at the review, the note added exactly as typed (line break and all) and confirmed.
    assert re.fullmatch(re.escape(review_url) + r"\?saved=\d+", page.url)
    assert focus_moves_to(page, "#note-saved")
    assert page.locator("#ISASS-RN-08 .note-text").last.inner_text() == text
    page.reload()  # the confirmed page reloads as a page, not as a second note
    assert page.locator("#ISASS-RN-08 .note-text").filter(has_text="Called the clinic").count() == 1


def test_a_refused_note_moves_focus_to_the_error_and_keeps_the_text(page, server):
    open_session_for(page, server)
    page.goto(server.url(f"/review/evaluations/{server.evaluation_id}"))
    page.fill("#note-text", "x" * 3999)
    page.evaluate("document.querySelector('#note-text').value += 'yy'")  # past maxlength, as a pasted text may be
    page.click("button:has-text('Add note')")

    assert focus_moves_to(page, "#note-errors")
    assert in_view(page, "#note-errors")  # not 5,000 px below the top
    assert page.locator("#note-errors").get_attribute("role") == "alert"
    assert "longer than 4,000 characters (4,001)" in page.locator("#note-errors").inner_text()
    assert page.locator("#note-text").input_value() == "x" * 3999 + "yy"
    page.locator("#note-errors a[href='#note-text']").click()
    assert active(page, "#note-text")


def test_the_printout_has_the_reference_time_and_page_number_on_every_page_on_letter_or_a4(page, server, tmp_path):
    if not shutil.which("pdftotext") or not shutil.which("pdfinfo"):
        pytest.skip("poppler-utils (pdftotext, pdfinfo) is not installed")
    open_session_for(page, server)
    review_url = server.url(f"/review/evaluations/{server.bundle_evaluation_id}")
    page.goto(review_url)
    letter = tmp_path / "letter.pdf"
    page.pdf(path=str(letter), prefer_css_page_size=True, print_background=True)
    page.click("a:has-text('lay it out on A4 instead')")
    a4 = tmp_path / "a4.pdf"
    page.pdf(path=str(a4), prefer_css_page_size=True, print_background=True)

    assert pdf_page_size(letter) == "612 x 792"  # US Letter by default
    assert re.fullmatch(r"59[45]\.\d+ x 84[12]\.\d+", pdf_page_size(a4))  # A4 when chosen
    pages = pdf_pages(letter)
    assert len(pages) >= 3
    for number, text in enumerate(pages, start=1):
        assert f"{server.external_id} · Review summary" in text, number
        assert re.search(r"Printed \d+ \w{3} \d{4}, \d\d:\d\d:\d\d UTC", text), number
        assert f"Page {number} of {len(pages)}" in text, number
    assert "Printed by UM nurse reviewer from the page as loaded on" in pages[0]
    assert "REQUESTED SERVICE" in pages[0].upper() and "CPT 64568" in pages[0]
    everything = "\n".join(pages)
    assert re.search(r"Signature\s+Date", everything)
    assert "Reviewed by UM nurse reviewer" in everything
    assert re.search(r"from FHIR Procedure/pt-1, performed 1 Jun 2025\s+Old: more than 12 months before the service date", everything)
    assert "from FHIR Patient/pat-1, born 15 Jun 1974" in everything
    assert len(pdf_pages(a4)) >= 3


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
    assert in_view(page, ".skip-link")  # shown when focused
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    assert active(page, "#key")
    page.keyboard.type(server.reviewer_key)
    press_and_wait(page, "Enter")
    assert page.url == server.url("/review/queue")  # sign-in lands on the work queue

    tab_to(page, "#external_id")  # its reference search
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # focus is visible
    page.keyboard.type(server.external_id.lower())
    press_and_wait(page, "Enter")
    tab_to(page, "td[data-label=Request] a")
    press_and_wait(page, "Enter")
    assert page.url == server.url(f"/review/evaluations/{server.bundle_evaluation_id}")  # the latest submission

    tab_to(page, "a[href='?note_on=ISASS-RN-02#add-note']")
    press_and_wait(page, "Enter")
    assert page.locator("#note-criterion").input_value() == "ISASS-RN-02"
    tab_to(page, "#note-text")
    page.keyboard.type("Typed with the keyboard alone.")
    page.keyboard.press("Tab")
    assert active(page, "button[type=submit]")
    press_and_wait(page, "Enter")
    assert "Typed with the keyboard alone." in page.locator("#ISASS-RN-02 .note-text").inner_text()


RING_CONTRAST = """() => {
  const el = document.activeElement, style = getComputedStyle(el);
  const rgb = (c) => { const p = c.match(/[\\d.]+/g).map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = ({r, g, b}) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
                                     .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  let node = el.parentElement, ground = {r: 255, g: 255, b: 255, a: 1};
  for (; node; node = node.parentElement) { const c = rgb(getComputedStyle(node).backgroundColor); if (c.a > 0) { ground = c; break; } }
  const [hi, lo] = [lum(rgb(style.outlineColor)), lum(ground)].sort((a, b) => b - a);
  return {ratio: (hi + 0.05) / (lo + 0.05), style: style.outlineStyle, width: parseFloat(style.outlineWidth),
          what: el.tagName + ' ' + (el.textContent || el.id || '').trim().slice(0, 40)};
}"""


def focus_rings(page, limit: int = 300) -> list[dict]:
    """Tab through the page once, the focus ring of every stop against the ground it sits on."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    rings = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        first_visit = page.evaluate(
            "(() => { const e = document.activeElement; if (e === document.body || e.dataset.ringSeen) return false;"
            " e.dataset.ringSeen = '1'; return true; })()"
        )
        if not first_visit:
            break
        rings.append(page.evaluate(RING_CONTRAST))
    return rings


def test_the_focus_ring_stands_out_three_to_one_on_every_background(page, server):
    page.goto(server.url("/review"))
    rings = focus_rings(page)
    open_session_for(page, server)
    for path in (f"/review/evaluations?external_id={server.external_id}", f"/review/evaluations/{server.evaluation_id}"):
        page.goto(server.url(path))
        rings += focus_rings(page)

    assert len(rings) > 50  # every link, field and button of the three pages
    weak = [r for r in rings if r["style"] == "none" or r["width"] < 2 or r["ratio"] < 3]
    assert weak == []


def test_nothing_scrolls_sideways_at_320_px(narrow_page, server):
    page = narrow_page
    widths = {}
    page.goto(server.url("/review"))
    widths["sign-in"] = page.evaluate("document.documentElement.scrollWidth")
    open_session_for(page, server)
    for name, path in (
        ("search", f"/review/evaluations?external_id={server.external_id}"),
        ("review", f"/review/evaluations/{server.evaluation_id}"),
        ("review of a FHIR Bundle", f"/review/evaluations/{server.bundle_evaluation_id}"),
    ):
        page.goto(server.url(path))
        widths[name] = page.evaluate("document.documentElement.scrollWidth")

    assert widths == dict.fromkeys(widths, 320)
    assert page.evaluate("getComputedStyle(document.querySelector('table.results') || document.body).display") in ("block", "flex")


def axe_violations(page) -> list[str]:
    """Every violation axe-core finds, whatever its impact (minor and moderate too)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
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


def test_axe_finds_no_violation_of_any_impact_in_any_state(browser, server):
    checked = {}
    for width, page in (("wide", new_page(browser)), ("320 px", new_page(browser, NARROW))):

        def check(state: str) -> None:
            checked[f"{state}, {width}"] = (axe_violations(page), structure_problems(page))

        page.goto(server.url("/review"))
        check("sign-in")
        sign_in(page, server, key="cc_wrong")
        check("sign-in refused")
        open_session_for(page, server)
        page.goto(server.url(f"/review/evaluations?external_id={server.external_id}"))
        check("search")
        page.goto(server.url(f"/review/evaluations/{server.evaluation_id}"))
        check("review")
        page.goto(server.url(f"/review/evaluations/{server.bundle_evaluation_id}"))
        check("review of a FHIR Bundle")
        page.fill("#note-text", "   ")
        page.evaluate("document.querySelector('#note-text').removeAttribute('required')")
        page.click("button:has-text('Add note')")
        assert "The note was not added" in page.content()
        check("review with a refused note")
        page.fill("#note-text", "Noted.")
        page.click("button:has-text('Add note')")
        check("review with a note just added")
        page.fill("#note-text", "Typed as the session ended.")
        end_sessions(server)
        page.click("button:has-text('Add note')")
        check("sign-in keeping a note")
        page.emulate_media(media="print")
        open_session_for(page, server)
        page.goto(server.url(f"/review/evaluations/{server.evaluation_id}"))
        checked[f"review printed, {width}"] = (axe_violations(page), [])
        page.context.close()

    assert {name: found for name, found in checked.items() if found != ([], [])} == {}
