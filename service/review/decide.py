"""The determination form: the reviewer's decision on a request's latest submission, recorded by
``service.determinations.record_determination`` (the only code that creates one). This module
reads the form, calls it, and shows the review again with what it said."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from service.determinations.record import record_determination
from service.errors import Conflict, InvalidInput, NotFound
from service.review import words
from service.review.render import forbidden, not_found, redirect, review_page, review_path
from service.review.sessions import SignedInDep, csrf_matches
from service.review.store import load_result
from service.review.workflow import determination_body, determination_draft
from service.web.dependencies import DatabaseDep

router = APIRouter(include_in_schema=False)  # under /review: pages.py includes it

NEWER_SUBMISSION = (
    "A newer submission of this request arrived while you were reading this one, so nothing was "
    "recorded. Read the newest submission (linked above), then decide on it."
)


@router.post("/requests/{request_id}/determinations")
async def decide(request: Request, request_id: str, session: SignedInDep, db: DatabaseDep) -> Response:
    form = await request.form()
    evaluation_id = form.get("evaluation_id")
    result = await run_in_threadpool(load_result, db, evaluation_id) if isinstance(evaluation_id, str) else None
    if result is None:
        return not_found(request, session)
    if not csrf_matches(session.csrf_token, form.get("csrf_token")):
        return forbidden(request, session)
    phrasing = words.ResultWords(request.app.state.evaluator.catalog)
    draft = determination_draft(result, phrasing, form)
    try:
        recorded = await run_in_threadpool(
            record_determination, db, request_id, determination_body(result["evaluation_id"], draft), reviewer=session.key
        )
    except NotFound:
        return not_found(request, session, "request")
    except InvalidInput as error:
        problems = {e["field"]: e["message"] for e in error.errors}
        if draft["outcome"] in ("denied", "partially_approved") and "reason" in problems and not draft["reason"].strip():
            draft["reason"] = words.reason_to_start_from(result, phrasing)  # a start, for the reviewer to edit
            problems["reason"] += "; the reason below starts from the criteria not met: edit it, then record again"
        return await run_in_threadpool(
            review_page, request, session, db, result, _no_note(), decision=draft, decision_problems=problems, status=422
        )
    except Conflict:
        problems = {"evaluation_id": NEWER_SUBMISSION}
        return await run_in_threadpool(
            review_page, request, session, db, result, _no_note(), decision=draft, decision_problems=problems, status=409
        )
    return redirect(f"{review_path(result['evaluation_id'])}?recorded={recorded['id']}")


def _no_note() -> dict[str, str]:
    return {"criterion": "", "text": ""}
