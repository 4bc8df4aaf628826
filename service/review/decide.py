"""The determination form: the reviewer's decision on a request's latest submission, recorded by
``service.determinations.record_determination`` (the only code that creates one). This module
reads the form, calls it, and shows the review again with what it said."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from service.determinations.record import record_determination
from service.errors import Conflict, InvalidInput, NotFound
from service.review import words
from service.review.render import forbidden, not_found, redirect, review_page, review_path, sign_in_page
from service.review.sessions import SESSION_COOKIE, csrf_matches
from service.review.store import SignedIn, find_session, load_result
from service.store.database import Database
from service.review.workflow import determination_body, determination_draft
from service.web.audit import audited
from service.web.dependencies import DatabaseDep

router = APIRouter(include_in_schema=False)  # under /review: pages.py includes it

SIGNED_IN_AGAIN = (
    "You are signed in again. Your determination is below as you filled it in: check it, tick the "
    "attestation again, and record it."
)
NEWER_SUBMISSION = (
    "A newer submission of this request arrived while you were reading this one, so nothing was "
    "recorded. Read the newest submission (linked above), then decide on it."
)


@router.post("/requests/{request_id}/determinations", dependencies=[audited("create", "determination", "request_id")])
async def decide(request: Request, request_id: str, db: DatabaseDep) -> Response:
    form = await request.form()
    evaluation_id = form.get("evaluation_id")
    session = await run_in_threadpool(find_session, db, request.cookies.get(SESSION_COOKIE))
    if session is None:
        # Keep what was filled in: the sign-in form carries it back to the review, unrecorded.
        pending = {"kind": "determination", "request_id": request_id, "evaluation_id": evaluation_id,
                   **determination_draft({}, None, form)}
        return sign_in_page(request, review_path(str(evaluation_id)), 401, None, pending)
    request.state.key_id = session.key_id
    result = await run_in_threadpool(load_result, db, session.key, evaluation_id) if isinstance(evaluation_id, str) else None
    if result is None:
        return not_found(request, session)
    if not csrf_matches(session.csrf_token, form.get("csrf_token")):
        return forbidden(request, session)
    return await run_in_threadpool(_record, request, session, db, request_id, result, form)


def _record(request: Request, session: SignedIn, db: Database, request_id: str, result: dict[str, Any], form: Any) -> Response:
    phrasing = words.ResultWords(request.app.state.evaluator.catalog)
    draft = determination_draft(result, phrasing, form)
    try:
        recorded = record_determination(db, request_id, determination_body(result["evaluation_id"], draft), reviewer=session.key)
    except NotFound:
        return not_found(request, session, "request")
    except InvalidInput as error:
        problems = {e["field"]: e["message"] for e in error.errors}
        if draft["outcome"] in ("denied", "partially_approved") and "reason" in problems and not draft["reason"].strip():
            draft["reason"] = words.reason_to_start_from(result, phrasing)  # a start, for the reviewer to edit
            problems["reason"] += "; the reason below starts from the criteria not met: edit it, then record again"
        return review_page(request, session, db, result, _no_note(), decision=draft, decision_problems=problems, status=422)
    except Conflict:
        problems = {"evaluation_id": NEWER_SUBMISSION}
        return review_page(request, session, db, result, _no_note(), decision=draft, decision_problems=problems, status=409)
    return redirect(f"{review_path(result['evaluation_id'])}?recorded={recorded['id']}")


def _no_note() -> dict[str, str]:
    return {"criterion": "", "text": ""}


def pending_decision(form: Any) -> dict[str, Any] | None:
    """A determination carried through the sign-in form (its ``decision_*`` fields), or None."""
    request_id, evaluation_id = form.get("decision_request"), form.get("decision_evaluation")
    if not (isinstance(request_id, str) and request_id and isinstance(evaluation_id, str) and evaluation_id):
        return None
    fields = FormFields({name: form.getlist(f"decision_{name}") for name in ("outcome", "reason", "criteria", "attestation", "amends")})
    return {"kind": "determination", "request_id": request_id, "evaluation_id": evaluation_id,
            **determination_draft({}, None, fields)}


def resume(request: Request, session: SignedIn | None, db: Database, pending: dict[str, Any]) -> Response:
    """Signed in again: the review with the determination as it was filled in, not recorded, for
    the reviewer to check (the attestation was given in a session that has ended) and record."""
    result = load_result(db, session.key, pending["evaluation_id"]) if session is not None else None
    if session is None or result is None:
        return redirect(review_path(pending["evaluation_id"]))
    draft = {name: pending[name] for name in ("outcome", "reason", "criteria", "attestation", "amends")}
    draft["attestation"] = False
    problems = {"session": SIGNED_IN_AGAIN}
    return review_page(request, session, db, result, _no_note(), decision=draft, decision_problems=problems)


class FormFields(dict):
    """Form values by name, each a list, read as a form is (``get``: the first, ``getlist``: all)."""

    def get(self, name: str, default: Any = None) -> Any:
        values = super().get(name) or []
        return values[0] if values else default

    def getlist(self, name: str) -> list[Any]:
        return list(super().get(name) or [])
