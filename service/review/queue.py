"""The work queue page, taking and releasing a request, and the "what changed" view of a
submission. Thin: the queue, the assignment and the changes are ``service.requests``'s; this
module only reads the page's form, calls them, and words what they return."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from service.errors import Conflict, NotFound
from service.requests.assignment import set_assignee
from service.requests.changes import evaluation_changes
from service.requests.queue import QueueFilter, get_request, list_queue
from service.review import words
from service.review.render import forbidden, message, not_found, page, redirect
from service.review.sessions import SignedInDep, csrf_matches, safe_next
from service.review.store import load_result
from service.review.workflow import request_context
from service.store.paging import InvalidCursor
from service.store.keys import KeyRecord
from service.web.audit import audited
from service.web.dependencies import DatabaseDep

router = APIRouter(include_in_schema=False)  # under /review: pages.py includes it

QUEUE_PAGE = 25
MAX_PREFIX = 128
CHOICES = {  # each filter's values as the form offers them; anything else is the first
    "assigned": ("any", "me", "none"),
    "state": ("open", "decided", "all"),
    "priority": ("", "expedited", "standard"),
}


@router.get("/queue", dependencies=[audited("search", "request")])
def work_queue(request: Request, session: SignedInDep, db: DatabaseDep) -> Response:
    """Open requests, most urgent first, filtered as the form asks; 25 a page."""
    query = request.query_params
    policies = {p.id: p.title for p in _policies(request)}
    chosen = {name: query.get(name, "") if query.get(name, "") in values else values[0] for name, values in CHOICES.items()}
    chosen["policy"] = query.get("policy", "") if query.get("policy", "") in policies else ""
    chosen["overdue"] = query.get("overdue") == "true"
    prefix = query.get("external_id", "").strip()
    problems = []
    if len(prefix) > MAX_PREFIX:
        problems.append(f"A reference has at most {MAX_PREFIX} characters; showing every reference.")
        prefix = ""
    chosen["external_id"] = prefix
    filters = QueueFilter(
        state=chosen["state"], policy=chosen["policy"] or None, priority=chosen["priority"] or None,
        assigned=chosen["assigned"], overdue=chosen["overdue"], external_id=prefix or None,
    )
    cursor = query.get("cursor") or None
    try:
        found = list_queue(db, filters, viewer_key_id=session.key_id, limit=QUEUE_PAGE, cursor=cursor)
    except InvalidCursor:
        problems.append("That page link is not valid any more; showing the first page.")
        cursor, found = None, list_queue(db, filters, viewer_key_id=session.key_id, limit=QUEUE_PAGE)
    defaults = {name: values[0] for name, values in CHOICES.items()}
    here = {name: ("true" if value is True else value) for name, value in chosen.items()
            if value not in ("", False) and value != defaults.get(name)}
    context = {
        "requests": found.results,
        "chosen": chosen,
        "policies": policies,
        "problems": problems,
        "first_page": cursor is None,
        "this_url": _queue_url({**here, **({"cursor": cursor} if cursor else {})}),
        "first_url": _queue_url(here),
        "next_url": _queue_url({**here, "cursor": found.next_cursor}) if found.next_cursor else None,
        "done": _done(db, query, session.key),
    }
    return page(request, session, "queue.html", context)


@router.post("/requests/{request_id}/assignee", dependencies=[audited("create", "request", "request_id")])
async def take_or_release(request: Request, request_id: str, session: SignedInDep, db: DatabaseDep) -> Response:
    """Take the request (``assignee=me``) or release it (empty), then back to the page the form was on."""
    form = await request.form()
    if not csrf_matches(session.csrf_token, form.get("csrf_token")):
        return forbidden(request, session)
    assignee = "me" if form.get("assignee") == "me" else None
    back = safe_next(form.get("back"))
    try:
        taken = await run_in_threadpool(set_assignee, db, request_id, assignee, by=session.key)
    except NotFound:
        return not_found(request, session, "request")
    except Conflict as held:
        return message(request, session, "Someone else has this request", str(held), 409, (back, "Back"))
    done = {"done": "taken" if assignee else "released", "request": taken["request_id"]}
    separator = "&" if "?" in back else "?"
    return redirect(f"{back}{separator}{urlencode(done)}")


@router.get("/requests/{request_id}/assignee")
@router.get("/requests/{request_id}/determinations")
def form_address_opened(request_id: str, session: SignedInDep, db: DatabaseDep) -> Response:
    """A form's address opened as a page (a reload, a bookmark): the request's latest submission."""
    found = get_request(db, request_id, session.key)
    return redirect(f"/review/evaluations/{found['latest_evaluation_id']}" if found else "/review/queue")


@router.get("/evaluations/{evaluation_id}/changes", dependencies=[audited("read", "evaluation", "evaluation_id")])
def what_changed(request: Request, evaluation_id: str, session: SignedInDep, db: DatabaseDep) -> Response:
    """This submission against the previous one of its request: fields, criteria and flags that moved."""
    result = load_result(db, session.key, evaluation_id)
    changes = evaluation_changes(db, evaluation_id) if result is not None else None
    if result is None or changes is None:
        return not_found(request, session)
    previous = load_result(db, session.key, changes["previous_evaluation_id"]) if changes["previous_evaluation_id"] else None
    titles = {f["id"]: f.get("title", "") for f in (*(previous or {}).get("criteria", []), *(previous or {}).get("flags", []),
                                                    *result.get("criteria", []), *result.get("flags", []))}
    context = {
        "result": result,
        "changes": changes,
        "previous": previous,
        "titles": titles,
        "words": words.ResultWords(request.app.state.evaluator.catalog),
        "request_info": request_context(db, session.key, evaluation_id),
    }
    return page(request, session, "changes.html", context)


def _policies(request: Request) -> list[Any]:
    """The newest version of each policy the service knows, for the policy filter."""
    catalog = request.app.state.evaluator.catalog
    return [versions[-1] for _, versions in sorted(catalog.versions.items()) if versions]


def _queue_url(params: dict[str, Any]) -> str:
    return f"/review/queue?{urlencode(params)}" if params else "/review/queue"


def _done(db: Any, query: Any, viewer: KeyRecord) -> dict[str, Any] | None:
    """What the reviewer has just done (taken or released a request), to confirm it: only when
    the request stands so (a crafted link confirms nothing)."""
    action, request_id = query.get("done"), query.get("request")
    if action not in ("taken", "released") or not request_id:
        return None
    found = get_request(db, request_id, viewer)
    if found is None:
        return None
    mine = (found["assigned_to"] or {}).get("key_id") == viewer.id
    return {"action": action, "request": found} if mine == (action == "taken") else None
