"""LHC-Forms (npm ``lforms``, from tests/js/node_modules: no CDN) in Debian's Chromium, as a DTR
client shows a questionnaire: a blank page at a made-up origin whose files Playwright serves
from disk, the form added with ``LForms.Util.addFormToPage`` (pre-filled answers merged in as a
QuestionnaireResponse), and the QuestionnaireResponse the form exports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cql_engine import node_modules
from review_browser import chromium, missing_browser

ORIGIN = "http://dtr-client.test"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>DTR</title>
<link rel="stylesheet" href="/lforms/webcomponent/styles.css">
<script src="/lforms/webcomponent/assets/lib/zone.min.js"></script>
<script src="/lforms/webcomponent/runtime.js" type="module"></script>
<script src="/lforms/webcomponent/polyfills.js" type="module"></script>
<script src="/lforms/webcomponent/main.js" type="module"></script>
<script defer src="/lforms/fhir/R4/lformsFHIR.min.js"></script>
</head><body><div id="form"></div></body></html>"""
_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".ico": "image/x-icon", ".map": "application/json"}


def why_not() -> str | None:
    return missing_browser()


@contextmanager
def lforms_page() -> Iterator[Any]:
    """A Playwright page with LHC-Forms loaded; any request outside the page's own files fails."""
    dist = node_modules() / "lforms" / "dist" / "lforms"
    errors: list[str] = []

    def serve(route: Any) -> None:
        url = route.request.url
        path = url[len(ORIGIN):].split("?")[0] if url.startswith(ORIGIN) else None
        if path == "/":
            return route.fulfill(body=PAGE, content_type="text/html")
        if path is not None and path.startswith("/lforms/"):
            file = (dist / path[len("/lforms/"):]).resolve()
            if file.is_file() and dist.resolve() in file.parents:
                return route.fulfill(body=file.read_bytes(), content_type=_TYPES.get(file.suffix, "application/octet-stream"))
        errors.append(url)
        return route.fulfill(status=404, body="")

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 1800})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.route("**/*", serve)
        page.goto(f"{ORIGIN}/")
        page.wait_for_function("() => window.LForms && LForms.Util && LForms.FHIR && customElements.get('wc-lhc-form')",
                               timeout=30000)
        page.errors = errors
        yield page


def show(page: Any, questionnaire: dict[str, Any], prefilled: dict[str, Any] | None = None) -> None:
    """Render a Questionnaire, with a pre-filled QuestionnaireResponse merged in (as DTR apps do)."""
    page.evaluate("""async ([q, qr]) => {
        let form = LForms.Util.convertFHIRQuestionnaireToLForms(q, 'R4');
        if (qr) form = LForms.Util.mergeFHIRDataIntoLForms('QuestionnaireResponse', qr, form, 'R4');
        await LForms.Util.addFormToPage(form, 'form');
    }""", [questionnaire, prefilled])
    page.wait_for_selector("lhc-item", timeout=30000)


def exported(page: Any) -> dict[str, Any]:
    return page.evaluate("() => LForms.Util.getFormFHIRData('QuestionnaireResponse', 'R4', document.getElementById('form'))")


def choose(page: Any, link_id: str, system: str, code: str) -> None:
    page.locator(f'[id="{link_id}/1/1|{system}|{code}"]').click()


def type_number(page: Any, link_id: str, value: Any) -> None:
    field = page.locator(f'input[id="{link_id}/1/1"]')
    field.fill(str(value))
    field.press("Tab")


def shown(page: Any, link_id: str) -> bool:
    return page.locator(f'[id="label-{link_id}/1/1"]').count() > 0 and page.locator(f'[id="label-{link_id}/1/1"]').is_visible()


def screenshot(page: Any, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
