"""How the review page's HTML is made: the Jinja2 environment, the security headers every page
carries, and the review summary's context (notes with their reviewers' names, the printout's
running header, the information to request). The routes are in :mod:`service.review.pages`."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from urllib.parse import quote

from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from service.review import words
from service.review.sessions import SIGN_IN_COOKIE, new_sign_in_token, set_cookie
from service.review.store import SignedIn, list_notes, reviewer_names
from service.review.workflow import determination_draft, request_context
from service.store.database import Database
from service.store.keys import KeyRecord
from service.store.evaluations import get_evaluation_case
from service.store.tables import utc_now

PACKAGE = Path(__file__).parent
SESSION_ENDED = {  # what the sign-in form says when it carries what was typed in a session that had ended
    "note": (
        "Your session had ended (30 minutes without use, or 8 hours in all), so your note has not been "
        "added yet. It is kept here: sign in again and it will be added, then you will be back at the review."
    ),
    "determination": (
        "Your session had ended (30 minutes without use, or 8 hours in all), so your determination has not "
        "been recorded. It is kept here: sign in again and you will be back at the review with the form as you "
        "filled it, to check and record."
    ),
}
PAPER_SIZES = {"letter": ("US Letter", "letter"), "a4": ("A4", "A4")}  # query value -> (words, CSS page size)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(PACKAGE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
)
templates.env.filters.update(
    moment=words.moment, day=words.day, ago=lambda value: words.relative(value, utc_now())
)
templates.env.globals.update(
    status=words.status, outcome_words=words.OUTCOMES, short_outcomes=words.OUTCOMES_SHORT, reviewer=words.reviewer, priorities=words.PRIORITIES,
    submitter=words.submitter,
    determination_words=words.DETERMINATIONS, time_left=lambda due_at: words.time_left(due_at, utc_now()),
)


def page(
    request: Request,
    session: SignedIn | None,
    template: str,
    context: dict[str, Any],
    status: int = 200,
    inline_style: str | None = None,
) -> Response:
    """A page with the security headers. ``inline_style`` (already CSS-escaped: no ``<`` in it) is
    allowed by its hash in the Content-Security-Policy, and by nothing else."""
    headers = dict(SECURITY_HEADERS)
    if inline_style is not None:
        digest = base64.b64encode(hashlib.sha256(inline_style.encode()).digest()).decode()
        headers["Content-Security-Policy"] = headers["Content-Security-Policy"].replace(
            "style-src 'self'", f"style-src 'self' 'sha256-{digest}'"
        )
    now = utc_now()
    return templates.TemplateResponse(
        request,
        template,
        {"session": session, "inline_style": inline_style, "now": words.iso(now), **context},
        status_code=status,
        headers=headers,
    )


def review_page(
    request: Request,
    session: SignedIn,
    db: Database,
    result: dict[str, Any],
    draft: dict[str, str],
    problems: dict[str, str] | None = None,
    status: int = 200,
    saved: int | None = None,
    paper: str = "letter",
    *,
    decision: dict[str, Any] | None = None,
    decision_problems: dict[str, str] | None = None,
    recorded: str | None = None,
    start_reason: bool = False,
    done: str | None = None,
) -> Response:
    """The review summary of one stored result: its request (which submission, the clock, the
    determinations), its notes and the note form (``draft`` in it), and on the latest submission
    the determination form (``decision``: the values sent back, with ``decision_problems``)."""
    phrasing = words.ResultWords(request.app.state.evaluator.catalog)
    notes = list_notes(db, result["evaluation_id"])
    names = reviewer_names(db, {note["key_id"] for note in notes})
    notes_by_criterion: dict[str | None, list[dict[str, Any]]] = {}
    for note in notes:
        note["reviewer"] = {"key_id": note["key_id"], "name": names.get(note["key_id"])}
        notes_by_criterion.setdefault(note["criterion"], []).append(note)
    sources: dict[str, dict[str, Any]] = {}
    for finding in (*result.get("criteria", []), *result.get("flags", [])):
        for citation in finding.get("citations", []):
            sources.setdefault(
                citation["source"],
                {"reference": citation.get("reference", ""), "url": phrasing.source_url(result["policy"], citation["source"])},
            )
    paper = paper if paper in PAPER_SIZES else "letter"
    printed_at = words.moment(words.iso(utc_now()))
    context = {
        "result": result,
        "words": phrasing,
        "flags": words.flags_in_reading_order(result.get("flags", [])),
        "flag_groups": words.flags_by_status(result),
        "to_request": words.information_to_request(result),
        "requested_service": words.requested_service(_stored_case(db, session.key, result["evaluation_id"])),
        "notes_by_criterion": notes_by_criterion,
        "note_count": len(notes),
        "sources": sources,
        "draft": draft,
        "problems": problems or {},
        "saved": saved,
        "paper": paper,
        "paper_sizes": PAPER_SIZES,
        "printed_at": printed_at,
        "request_info": request_context(db, session.key, result["evaluation_id"]),
        "decision": decision or determination_draft(result, phrasing, start_reason=start_reason),
        "decision_problems": decision_problems or {},
        "recorded": recorded,
        "done": done if done in ("taken", "released") else None,
        "outcomes": words.DETERMINATIONS,
    }
    style = print_style(result.get("external_id", ""), printed_at, PAPER_SIZES[paper][1])
    return page(request, session, "review.html", context, status, inline_style=style)


def print_style(reference: str, printed_at: str, size: str) -> str:
    """The printout's page size and running header: the case reference and the time printed, on
    every page (the footer, with the page number, is in review.css)."""
    return (
        f"@page {{ size: {size}; "
        f"@top-left {{ content: \"{css_string(reference)} \\00b7  Review summary\"; }} "
        f"@top-right {{ content: \"Printed {css_string(printed_at)}\"; }} }}"
    )


def css_string(text: str) -> str:
    """``text`` for inside a double-quoted CSS string in a <style> element: every character but
    ASCII letters, digits, spaces and ``-_.,:/()`` as a six-digit CSS escape, so nothing in it
    can end the string or the element."""
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.,:/()")
    return "".join(ch if ch in safe else f"\\{ord(ch):06x}" for ch in text)


def _stored_case(db: Database, caller: KeyRecord, evaluation_id: str) -> dict[str, Any]:
    case_json = get_evaluation_case(db, caller, evaluation_id)
    try:
        case = json.loads(case_json) if case_json else {}
    except ValueError:
        return {}
    return case if isinstance(case, dict) else {}


def review_path(evaluation_id: str) -> str:
    return f"/review/evaluations/{quote(evaluation_id, safe='')}"


def redirect(location: str) -> Response:
    """See the page at ``location`` next (303: a form's answer, fetched with GET)."""
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


def message(request: Request, session: SignedIn | None, heading: str, text: str, status: int,
            link: tuple[str, str] = ("/review/queue", "Back to the work queue")) -> Response:
    context = {"heading": heading, "message": text, "link": link}
    return page(request, session, "message.html", context, status)


def not_found(request: Request, session: SignedIn, what: str = "evaluation") -> Response:
    return message(request, session, f"No such {what}", f"No {what} has this id. Search by intake reference instead.", 404)


def forbidden(request: Request, session: SignedIn) -> Response:
    return message(
        request, session, "The form had expired",
        "The form did not carry this session's token, so nothing was done. Go back, reload the page and try again.", 403,
    )


def sign_in_page(
    request: Request, target: str, status: int = 200, error: str | None = None, pending: dict[str, Any] | None = None
) -> Response:
    """The sign-in form (going to ``target`` afterwards), with ``error``, and carrying ``pending``:
    a note or a determination typed in a session that had ended."""
    token = new_sign_in_token()
    context = {
        "csrf_token": token,
        "next": target,
        "error": error,
        "signed_out": request.query_params.get("signed_out") == "1" and error is None and pending is None,
        "pending": pending,
        "session_ended": SESSION_ENDED[pending["kind"]] if pending else None,
        "outcomes": words.DETERMINATIONS,
    }
    response = page(request, None, "sign_in.html", context, status)
    set_cookie(request, response, SIGN_IN_COOKIE, token, max_age=3600)
    return response
