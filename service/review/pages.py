"""The review page's routes: sign-in and sign-out, search by ``external_id``, the review summary of
one evaluation, and its note form. Server-rendered HTML (Jinja2, autoescaped); no script at all,
and a Content-Security-Policy that would refuse any, so nothing loads from elsewhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from service.web.audit import audit_of, audited
from service.web.dependencies import DatabaseDep
from service.errors import InvalidInput
from service.review import words
from service.review.notes import checked_note
from service.review.sessions import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SignedInDep,
    clear_cookie,
    csrf_matches,
    new_sign_in_token,
    safe_next,
    set_cookie,
    set_session_cookie,
    sign_in_retry_after,
)
from service.review.store import (
    SignedIn,
    add_note,
    close_session,
    find_session,
    list_notes,
    load_result,
    open_session,
)
from service.store.database import Database
from service.store.evaluations import list_evaluation_results
from service.store.paging import InvalidCursor
from service.store.keys import authenticate

PACKAGE = Path(__file__).parent
PAGE_SIZE = 20
SEE_OTHER = 303  # what a form's success answers: the page to see next
MAX_EXTERNAL_ID_LENGTH = 128
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
templates.env.filters.update(moment=words.moment, day=words.day)
templates.env.globals.update(status=words.status, outcome_words=words.OUTCOMES, submitter=words.submitter)

router = APIRouter(prefix="/review", include_in_schema=False)


# --- signing in and out -----------------------------------------------------------------------


@router.get("")
def sign_in_form(request: Request, db: DatabaseDep, next: str | None = None) -> Response:
    if find_session(db, request.cookies.get(SESSION_COOKIE)) is not None:
        return _redirect(safe_next(next))
    return _sign_in_page(request, safe_next(next))


@router.post("/sign-in", dependencies=[audited("sign-in", "page")])
async def sign_in(request: Request, db: DatabaseDep) -> Response:
    access = audit_of(request)
    form = await request.form()
    target = safe_next(form.get("next"))
    access.action = "sign-in-failed"  # until a reviewer key has been accepted
    if not csrf_matches(request.cookies.get(SIGN_IN_COOKIE), form.get("csrf_token")):
        return _sign_in_page(
            request, target, 403, "The sign-in form had expired or came from elsewhere. Please try again."
        )
    if wait := sign_in_retry_after(request):
        response = _sign_in_page(
            request, target, 429, f"Too many sign-in attempts from this address. Try again in {wait} seconds."
        )
        response.headers["Retry-After"] = str(wait)
        return response
    presented = form.get("key")
    key = await run_in_threadpool(authenticate, db, presented if isinstance(presented, str) else None)
    if key is None:
        return _sign_in_page(request, target, 401, "That key was not accepted. Check it and try again.")
    request.state.key = key  # who tried, for the audit trail
    if not key.has_role("reviewer"):
        return _sign_in_page(
            request, target, 403, f"This is an {key.role} key: only reviewer keys can sign in to the review page."
        )
    await run_in_threadpool(close_session, db, request.cookies.get(SESSION_COOKIE))
    token = await run_in_threadpool(open_session, db, key.id)
    access.action = "sign-in"
    request.state.key_id = key.id
    response = _redirect(target)
    set_session_cookie(request, response, token)
    clear_cookie(request, response, SIGN_IN_COOKIE)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, session: SignedInDep, db: DatabaseDep) -> Response:
    form = await request.form()
    if not csrf_matches(session.csrf_token, form.get("csrf_token")):
        return _forbidden(request, session)
    await run_in_threadpool(close_session, db, request.cookies.get(SESSION_COOKIE))
    response = _redirect("/review?signed_out=1")
    clear_cookie(request, response, SESSION_COOKIE)
    return response


# --- search -----------------------------------------------------------------------------------


@router.get("/evaluations", dependencies=[audited("search", "evaluation")])
def search(
    request: Request,
    session: SignedInDep,
    db: DatabaseDep,
    external_id: Annotated[str | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    context: dict[str, Any] = {"external_id": external_id or "", "results": None, "error": None}
    status = 200
    if external_id is not None and not 1 <= len(external_id) <= MAX_EXTERNAL_ID_LENGTH:
        context["error"] = f"An intake reference has 1 to {MAX_EXTERNAL_ID_LENGTH} characters."
        status = 422
    elif external_id:
        try:
            page = list_evaluation_results(db, session.key, external_id, PAGE_SIZE, cursor)
        except InvalidCursor:
            context["error"] = "That page link is not valid any more; showing the newest evaluations."
            page = list_evaluation_results(db, session.key, external_id, PAGE_SIZE)
        next_cursor = page.next_cursor
        context.update(
            results=[json.loads(result) for result in page.results],
            first_page=not cursor or context["error"] is not None,
            next_url=(
                f"/review/evaluations?{urlencode({'external_id': external_id, 'cursor': next_cursor})}"
                if next_cursor
                else None
            ),
            first_url=f"/review/evaluations?{urlencode({'external_id': external_id})}",
        )
    return _page(request, session, "search.html", context, status)


# --- the review summary and its notes ---------------------------------------------------------


@router.get("/evaluations/{evaluation_id}", dependencies=[audited("read", "page", "evaluation_id")])
def review(
    request: Request,
    evaluation_id: str,
    session: SignedInDep,
    db: DatabaseDep,
    note_on: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    result = load_result(db, session.key, evaluation_id)
    if result is None:
        return _not_found(request, session)
    return _review_page(request, session, db, result, {"criterion": note_on or "", "text": ""})


@router.post("/evaluations/{evaluation_id}/notes", dependencies=[audited("create", "note", "evaluation_id")])
async def add_note_from_form(request: Request, evaluation_id: str, session: SignedInDep, db: DatabaseDep) -> Response:
    form = await request.form()
    if not csrf_matches(session.csrf_token, form.get("csrf_token")):
        return _forbidden(request, session)
    result = await run_in_threadpool(load_result, db, session.key, evaluation_id)
    if result is None:
        return _not_found(request, session)
    criterion = form.get("criterion") or None
    text = form.get("text")
    text = text.replace("\r\n", "\n") if isinstance(text, str) else ""  # browsers send CRLF line breaks
    draft = {"criterion": criterion if isinstance(criterion, str) else "", "text": text}
    try:
        criterion, text = checked_note(result, draft["criterion"] or None, text)
    except InvalidInput as error:
        problems = {e["field"]: e["message"] for e in error.errors}
        return await run_in_threadpool(_review_page, request, session, db, result, draft, problems, 422)
    access = audit_of(request)
    note = await run_in_threadpool(add_note, db, evaluation_id, criterion, text, session.key_id,
                                   access.rows(SEE_OTHER))
    access.committed()
    return _redirect(f"/review/evaluations/{evaluation_id}#note-{note['id']}")


@router.get("/static/review.css")
def stylesheet() -> Response:
    return FileResponse(PACKAGE / "static" / "review.css", media_type="text/css", headers={"Cache-Control": "no-cache"})


# --- rendering --------------------------------------------------------------------------------


def _review_page(
    request: Request,
    session: SignedIn,
    db: Database,
    result: dict[str, Any],
    draft: dict[str, str],
    problems: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    phrasing = words.ResultWords(request.app.state.evaluator.catalog)
    notes = list_notes(db, result["evaluation_id"])
    notes_by_criterion: dict[str | None, list[dict[str, Any]]] = {}
    for note in notes:
        notes_by_criterion.setdefault(note["criterion"], []).append(note)
    sources: dict[str, dict[str, Any]] = {}
    for finding in (*result.get("criteria", []), *result.get("flags", [])):
        for citation in finding.get("citations", []):
            sources.setdefault(
                citation["source"],
                {"reference": citation.get("reference", ""), "url": phrasing.source_url(result["policy"], citation["source"])},
            )
    context = {
        "result": result,
        "words": phrasing,
        "flags": words.flags_in_reading_order(result.get("flags", [])),
        "flags_present": result.get("summary", {}).get("flags_present")
        or [f["id"] for f in result.get("flags", []) if f.get("status") == "present"],
        "notes_by_criterion": notes_by_criterion,
        "note_count": len(notes),
        "sources": sources,
        "draft": draft,
        "problems": problems or {},
    }
    return _page(request, session, "review.html", context, status)


def _page(request: Request, session: SignedIn | None, template: str, context: dict[str, Any], status: int = 200) -> Response:
    return templates.TemplateResponse(
        request, template, {"session": session, **context}, status_code=status, headers=SECURITY_HEADERS
    )


def _sign_in_page(request: Request, target: str, status: int = 200, error: str | None = None) -> Response:
    token = new_sign_in_token()
    context = {
        "csrf_token": token,
        "next": target,
        "error": error,
        "signed_out": request.query_params.get("signed_out") == "1" and error is None,
    }
    response = _page(request, None, "sign_in.html", context, status)
    set_cookie(request, response, SIGN_IN_COOKIE, token, max_age=3600)
    return response


def _not_found(request: Request, session: SignedIn) -> Response:
    context = {"heading": "No such evaluation", "message": "No evaluation has this id. Search by intake reference instead."}
    return _page(request, session, "message.html", context, 404)


def _forbidden(request: Request, session: SignedIn) -> Response:
    context = {
        "heading": "The form had expired",
        "message": "The form did not carry this session's token, so nothing was done. Go back, reload the page and try again.",
    }
    return _page(request, session, "message.html", context, 403)


def _redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=SEE_OTHER, headers={"Cache-Control": "no-store"})
