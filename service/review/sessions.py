"""Signing reviewers in and out of the review page, and keeping its forms honest.

- The session cookie holds a random token; the database holds only its SHA-256
  (:mod:`service.review.store`). The cookie is HttpOnly, SameSite=Strict, scoped to ``/review``,
  Secure when the page is served over HTTPS, and expires with the session (30 idle minutes,
  8 hours at most).
- Every form carries a CSRF token: the session's own once signed in; before that (the sign-in
  form) a random value that must match a cookie set with the form (double submit).
- Sign-in attempts are limited per client address, whatever their outcome (in PostgreSQL, so
  the limit holds across every server sharing the database).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, Response

from service.web.dependencies import DatabaseDep
from service.web.ratelimit import RateLimiter
from service.review.store import SESSION_LIFETIME, SignedIn, find_session

SESSION_COOKIE = "cc_review_session"
SIGN_IN_COOKIE = "cc_review_sign_in"
COOKIE_PATH = "/review"
SIGN_IN_ATTEMPTS_PER_MINUTE = 10


def signed_in(request: Request, db: DatabaseDep) -> SignedIn:
    """The reviewer's live session; without one, a redirect to the sign-in form (which brings the
    reviewer back to this path afterwards) and no page content. The query string is dropped: it
    may hold an intake reference, which a page without a session must not echo."""
    session = find_session(db, request.cookies.get(SESSION_COOKIE))
    if session is None:
        target = quote(request.url.path, safe="")
        raise HTTPException(
            303,
            detail="Sign in to see this page.",
            headers={"Location": f"{COOKIE_PATH}?next={target}", "Cache-Control": "no-store"},
        )
    request.state.key_id = session.key_id  # for the access log
    request.state.key = session.key  # and the audit trail
    return session


SignedInDep = Annotated[SignedIn, Depends(signed_in)]


def csrf_matches(expected: str | None, presented: object) -> bool:
    return bool(expected) and isinstance(presented, str) and hmac.compare_digest(expected, presented)


def safe_next(target: object) -> str:
    """Where to go after signing in: a path of the review page, never another site."""
    default = f"{COOKIE_PATH}/queue"
    if not isinstance(target, str) or not target.startswith(f"{COOKIE_PATH}/") or len(target) > 2000:
        return default
    if "\\" in target or "//" in target or any(ch < " " or ch == "\x7f" for ch in target):
        return default
    return target


def sign_in_retry_after(request: Request) -> int:
    """Take one sign-in attempt for the client's address: 0 when allowed, else seconds to wait."""
    state = request.app.state
    limiter = getattr(state, "review_sign_in_limiter", None)
    if limiter is None:  # counted in the buckets every server shares, when there are such
        limiter = state.review_sign_in_limiter = RateLimiter(
            SIGN_IN_ATTEMPTS_PER_MINUTE, max_buckets=10_000, name="review-sign-in",
            shared=getattr(state, "shared_buckets", None))
    return limiter.retry_after(request.client.host if request.client else "unknown")


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(32)


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    set_cookie(request, response, SESSION_COOKIE, token, int(SESSION_LIFETIME.total_seconds()))


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, secure=request.url.scheme == "https", httponly=True, samesite="strict"
    )
