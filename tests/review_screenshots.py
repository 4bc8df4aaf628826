"""Writes docs/review-screen.png and docs/review-print.png: the review summary on screen and as
printed (PDF from Chromium, first page through pdftoppm). Run from the checkout:

    .venv/bin/python tests/review_screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from review_browser import chromium, missing_browser, pdf_to_png, review_server, sign_in  # noqa: E402
from servers import ROOT  # noqa: E402

DOCS = ROOT / "docs"


def main() -> None:
    if reason := missing_browser():
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory() as scratch, review_server(Path(scratch), notes=True) as server, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1500}, device_scale_factor=1)
        sign_in(page, server)
        page.goto(server.url(f"/review/evaluations/{server.bundle_evaluation_id}"))
        page.screenshot(path=str(DOCS / "review-screen.png"))
        pdf = Path(scratch) / "review.pdf"
        page.pdf(path=str(pdf), prefer_css_page_size=True, print_background=True)  # US Letter, as the page asks
        pdf_to_png(pdf, DOCS / "review-print.png")
    print(f"wrote {DOCS / 'review-screen.png'} and {DOCS / 'review-print.png'}")


if __name__ == "__main__":
    main()
