"""Writes the review page's screenshots in docs/: the work queue, a review summary on screen and
as printed (PDF from Chromium, first page through pdftoppm), and the "what changed" view of a
third submission. Run from the checkout:

    .venv/bin/python tests/review_screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from review_browser import (  # noqa: E402
    a_day_of_requests, chromium, missing_browser, open_session_for, pdf_to_png, review_server,
)
from servers import ROOT  # noqa: E402

DOCS = ROOT / "docs"


def main() -> None:
    if reason := missing_browser():
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory() as scratch, review_server(Path(scratch), notes=True) as server, chromium() as browser:
        day = a_day_of_requests(server)
        page = browser.new_page(viewport={"width": 1280, "height": 1500}, device_scale_factor=1)
        open_session_for(page, server)
        page.goto(server.url("/review/queue"))
        page.click("button:has-text('Take REQ-THREE')")
        page.goto(server.url("/review/queue"))
        page.set_viewport_size({"width": 1280, "height": 1000})
        page.screenshot(path=str(DOCS / "review-queue.png"))
        page.goto(server.url(f"/review/evaluations/{day['REQ-THREE'][2]}/changes"))
        page.set_viewport_size({"width": 1280, "height": 760})
        page.screenshot(path=str(DOCS / "review-changes.png"))
        page.set_viewport_size({"width": 1280, "height": 1500})
        page.goto(server.url(f"/review/evaluations/{server.bundle_evaluation_id}"))
        page.screenshot(path=str(DOCS / "review-screen.png"))
        pdf = Path(scratch) / "review.pdf"
        page.pdf(path=str(pdf), prefer_css_page_size=True, print_background=True)  # US Letter, as the page asks
        pdf_to_png(pdf, DOCS / "review-print.png")
    print(f"wrote {', '.join(f'docs/review-{n}.png' for n in ('queue', 'changes', 'screen', 'print'))}")


if __name__ == "__main__":
    main()
