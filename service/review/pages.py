"""The review page's routes: sign-in and sign-out, search by ``external_id``, the review summary of
one evaluation, and its note form. Server-rendered HTML (Jinja2, autoescaped); no script at all,
and a Content-Security-Policy that would refuse any, so nothing loads from elsewhere."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from service.audit.record import Access
from service.web.audit import audit_of, audited
from service.web.dependencies import DatabaseDep
from service.errors import InvalidInput
from service.review import decide, queue
from service.review.notes import checked_note
from service.review.render import PACKAGE, forbidden, not_found, page, redirect, review_page, review_path, sign_in_page
from service.review.sessions import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SignedInDep,
    clear_cookie,
    csrf_matches,
    safe_next,
    set_session_cookie,
    sign_in_retry_after,
)
from service.review.store import SignedIn, add_note, close_session, find_session, load_result, open_session
from service.store.database import Database
from service.store.evaluations import list_evaluation_results
from service.store.paging import InvalidCursor
from service.store.keys import authenticate

PAGE_SIZE = 20
SEE_OTHER = 303  # what a form's success answers: the page to see next
MAX_EXTERNAL_ID_LENGTH = 128
STALE_FORM = (
    "This form was opened in an earlier session, so the note was not added. It is kept below: "
    "check it and choose Add note again."
)

router = APIRouter(prefix="/review", include_in_schema=False)
router.include_router(queue.router)
router.include_router(decide.router)


# --- signing in and out -----------------------------------------------------------------------


@router.get("")
def sign_in_form(request: Request, db: DatabaseDep, next: str | None = None) -> Response:
    if find_session(db, request.cookies.get(SESSION_COOKIE)) is not None:
        return redirect(safe_next(next))
    return sign_in_page(request, safe_next(next))


@router.post("/sign-in", dependencies=[audited("sign-in", "page")])
async def sign_in(request: Request, db: DatabaseDep) -> Response:
    access = audit_of(request)
    form = await request.form()
    target = safe_next(form.get("next"))
    # A note or a determination typed in a session that had ended, carried through sign-in.
    pending = _pending_note(form) or decide.pending_decision(form)
    access.action = "sign-in-failed"  # until a reviewer key has been accepted
    if not csrf_matches(request.cookies.get(SIGN_IN_COOKIE), form.get("csrf_token")):
        return sign_in_page(
            request, target, 403, "The sign-in form had expired or came from elsewhere. Please try again.", pending
        )
    if wait := sign_in_retry_after(request):
        response = sign_in_page(
            request, target, 429, f"Too many sign-in attempts from this address. Try again in {wait} seconds.", pending
        )
        response.headers["Retry-After"] = str(wait)
        return response
    presented = form.get("key")
    key = await run_in_threadpool(authenticate, db, presented if isinstance(presented, str) else None)
    if key is None:
        return sign_in_page(request, target, 401, "That key was not accepted. Check it and try again.", pending)
    request.state.key = key  # who tried, for the audit trail
    if not key.has_role("reviewer"):
        return sign_in_page(
            request, target, 403, f"This is an {key.role} key: only reviewer keys can sign in to the review page.",
            pending,
        )
    await run_in_threadpool(close_session, db, request.cookies.get(SESSION_COOKIE))
    token = await run_in_threadpool(open_session, db, key.id)
    access.action = "sign-in"
    request.state.key_id = key.id
    if pending is not None:
        session = await run_in_threadpool(find_session, db, token)
        resume = _add_pending_note if pending["kind"] == "note" else decide.resume
        response = await run_in_threadpool(resume, request, session, db, pending)
    else:
        response = redirect(target)
    set_session_cookie(request, response, token)
    clear_cookie(request, response, SIGN_IN_COOKIE)
    return response


@router.get("/sign-in")
@router.get("/sign-out")
def sign_in_or_out_opened(request: Request) -> Response:
    """A bookmarked or reloaded form address: the sign-in form (which passes a live session on)."""
    return redirect("/review")


@router.post("/sign-out")
async def sign_out(request: Request, session: SignedInDep, db: DatabaseDep) -> Response:
    form = await request.form()
    if not csrf_matches(session.csrf_token, form.get("csrf_token")):
        return forbidden(request, session)
    await run_in_threadpool(close_session, db, request.cookies.get(SESSION_COOKIE))
    response = redirect("/review?signed_out=1")
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
            found = list_evaluation_results(db, session.key, external_id, PAGE_SIZE, cursor)
        except InvalidCursor:
            context["error"] = "That page link is not valid any more; showing the newest evaluations."
            found = list_evaluation_results(db, session.key, external_id, PAGE_SIZE)
        next_cursor = found.next_cursor
        context.update(
            results=[json.loads(result) for result in found.results],
            first_page=not cursor or context["error"] is not None,
            next_url=(
                f"/review/evaluations?{urlencode({'external_id': external_id, 'cursor': next_cursor})}"
                if next_cursor
                else None
            ),
            first_url=f"/review/evaluations?{urlencode({'external_id': external_id})}",
        )
    return page(request, session, "search.html", context, status)


# --- the review summary and its notes ---------------------------------------------------------


@router.get("/evaluations/{evaluation_id}", dependencies=[audited("read", "page", "evaluation_id")])
def review(
    request: Request,
    evaluation_id: str,
    session: SignedInDep,
    db: DatabaseDep,
    note_on: Annotated[str | None, Query(max_length=64)] = None,
    saved: Annotated[int | None, Query(ge=1)] = None,
    paper: Annotated[str, Query(max_length=8)] = "letter",
    recorded: Annotated[str | None, Query(max_length=64)] = None,
    start_reason: bool = False,
    done: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    result = load_result(db, session.key, evaluation_id)
    if result is None:
        return not_found(request, session)
    draft = {"criterion": note_on or "", "text": ""}
    return review_page(
        request, session, db, result, draft, saved=saved, paper=paper, recorded=recorded, start_reason=start_reason,
        done=done,
    )


@router.post("/evaluations/{evaluation_id}/notes", dependencies=[audited("create", "note", "evaluation_id")])
async def add_note_from_form(request: Request, evaluation_id: str, db: DatabaseDep) -> Response:
    form = await request.form()
    draft = _draft(form.get("criterion"), form.get("text"))
    session = await run_in_threadpool(find_session, db, request.cookies.get(SESSION_COOKIE))
    if session is None:
        # Keep what was typed: the sign-in form carries it, and signing in adds it (nothing of the
        # case is shown here but the note this browser has just sent).
        pending = {"kind": "note", "evaluation_id": evaluation_id, **draft}
        return sign_in_page(request, review_path(evaluation_id), 401, None, pending)
    request.state.key_id = session.key_id
    request.state.key = session.key
    result = await run_in_threadpool(load_result, db, session.key, evaluation_id)
    if result is None:
        return not_found(request, session)
    if not csrf_matches(session.csrf_token, form.get("csrf_token")):
        problems = {"form": STALE_FORM}
        return await run_in_threadpool(review_page, request, session, db, result, draft, problems, 403)
    return await run_in_threadpool(_store_note, request, session, db, result, draft, audit_of(request))


@router.get("/evaluations/{evaluation_id}/notes")
def note_form_opened(evaluation_id: str) -> Response:
    """The note form's address opened as a page (a reload, a bookmark): the review, at the form."""
    return redirect(f"{review_path(evaluation_id)}#add-note")


@router.get("/static/review.css")
def stylesheet() -> Response:
    return FileResponse(PACKAGE / "static" / "review.css", media_type="text/css", headers={"Cache-Control": "no-cache"})


# --- helpers ----------------------------------------------------------------------------------


def _store_note(request: Request, session: SignedIn, db: Database, result: dict[str, Any], draft: dict[str, str],
                access: Access | None = None) -> Response:
    """Check and append the note (with ``access``'s audit record, in its transaction), then show
    it, confirmed, on the review; or the review again with the note and what is wrong with it
    (focus moves to the message)."""
    try:
        criterion, text = checked_note(result, draft["criterion"] or None, draft["text"])
    except InvalidInput as error:
        problems = {e["field"]: e["message"] for e in error.errors}
        return review_page(request, session, db, result, draft, problems, 422)
    note = add_note(db, result["evaluation_id"], criterion, text, session.key_id,
                    access.rows(SEE_OTHER) if access is not None else ())
    if access is not None:
        access.committed()
    # No fragment: a fragment target would stop the browser from moving focus to the confirmation.
    return redirect(f"{review_path(result['evaluation_id'])}?saved={note['id']}")


def _add_pending_note(request: Request, session: SignedIn | None, db: Database, pending: dict[str, str]) -> Response:
    result = load_result(db, session.key, pending["evaluation_id"]) if session is not None else None
    if session is None or result is None:
        return redirect(review_path(pending["evaluation_id"]))
    return _store_note(request, session, db, result, {"criterion": pending["criterion"], "text": pending["text"]})


def _draft(criterion: object, text: object) -> dict[str, str]:
    text = text.replace("\r\n", "\n") if isinstance(text, str) else ""  # browsers send CRLF line breaks
    return {"criterion": criterion if isinstance(criterion, str) else "", "text": text}


def _pending_note(form: Any) -> dict[str, str] | None:
    evaluation_id = form.get("note_evaluation")
    if not isinstance(evaluation_id, str) or not evaluation_id:
        return None
    return {"kind": "note", "evaluation_id": evaluation_id, **_draft(form.get("note_criterion"), form.get("note_text"))}
