"""More than one machine: two ``serve`` processes on separate loopback ports, one PostgreSQL
database, as two hosts behind a load balancer. Every limit and every piece of state a client may
carry from one to the other holds across both: an API key's rate limit, sign-in attempts per
address, review sessions, Idempotency-Keys, and CDS Hooks token ids (jti) and client limits."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from cds_client import PUBLIC_URL, SIGN, Signer, clients_file
from conftest import FULL_CASE
from servers import start_server
from service.store.database import Database
from service.store.keys import create_key

PER_MINUTE = 6
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer("ES384")


@pytest.fixture
def two_servers(postgres_url, tmp_path, signer) -> Iterator[tuple[str, str, str]]:
    """Two servers on one fresh PostgreSQL schema; yields their base URLs and the database URL."""
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
    env = {**os.environ, "COVERAGE_CRITERIA_DATABASE_URL": postgres_url,
           "COVERAGE_CRITERIA_RATE_LIMIT_PER_MINUTE": str(PER_MINUTE), "COVERAGE_CRITERIA_PUBLIC_URL": PUBLIC_URL,
           "COVERAGE_CRITERIA_CDS_CLIENTS": str(clients_file(tmp_path / "clients.json", signer))}
    started = []
    try:
        for name in ("a", "b"):
            data = tmp_path / name
            data.mkdir()
            started.append(start_server({**env, "COVERAGE_CRITERIA_DATA_DIR": str(data)}, tmp_path / f"{name}.log"))
        yield started[0][1], started[1][1], postgres_url
    finally:
        for server, _ in started:
            server.terminate()
            server.wait(30)


def keys(database_url: str, role: str, count: int = 1) -> list[str]:
    db = Database(database_url)
    try:
        return [create_key(db, role)[1] for _ in range(count)]
    finally:
        db.dispose()


def test_an_api_keys_rate_limit_holds_across_both_servers(two_servers):
    a, b, url = two_servers
    key = {"X-API-Key": keys(url, "intake")[0]}
    answers = [httpx.get(f"{server}/v1/policies", headers=key).status_code for server in (a, b) * (PER_MINUTE // 2)]
    assert answers == [200] * PER_MINUTE
    for server in (a, b):
        refused = httpx.get(f"{server}/v1/policies", headers=key)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    other = {"X-API-Key": keys(url, "intake")[0]}  # a bucket per key
    assert httpx.get(f"{b}/v1/policies", headers=other).status_code == 200


def sign_in(client: httpx.Client, key: str) -> httpx.Response:
    form = client.get("/review")
    return client.post("/review/sign-in", data={"key": key, "csrf_token": CSRF.search(form.text)[1]})


def test_sign_in_attempts_sessions_and_sign_in_limits_hold_across_both_servers(two_servers):
    a, b, url = two_servers
    reviewer = keys(url, "reviewer")[0]
    with httpx.Client(base_url=a) as on_a, httpx.Client(base_url=b) as on_b:
        assert sign_in(on_a, reviewer).status_code == 303  # attempt 1, on A
        on_b.cookies.update(on_a.cookies)  # the browser, sent to B by the load balancer
        page = on_b.get("/review/evaluations")
        assert page.status_code == 200 and "Sign in" not in page.text.split("<main", 1)[-1][:200]
    wrong = "cc_0000000000000000_" + "x" * 43
    statuses = []
    for server in (b, a) * 5:  # attempts 2-11, each from a browser without a session
        with httpx.Client(base_url=server) as browser:
            statuses.append(sign_in(browser, wrong).status_code)
    assert statuses == [401] * 9 + [429]
    with httpx.Client(base_url=b) as browser:
        assert sign_in(browser, reviewer).status_code == 429  # the address's limit, whichever server


def test_an_idempotency_key_holds_across_both_servers(two_servers):
    a, b, url = two_servers
    key = {"X-API-Key": keys(url, "intake")[0], "Idempotency-Key": f"retry-{uuid.uuid4()}"}
    first = httpx.post(f"{a}/v1/evaluations", json=FULL_CASE, headers=key)
    again = httpx.post(f"{b}/v1/evaluations", json=FULL_CASE, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert httpx.post(f"{b}/v1/evaluations", json={**FULL_CASE, "external_id": "other"}, headers=key).status_code == 409


def test_a_cds_token_is_accepted_once_and_a_clients_calls_are_limited_across_both_servers(two_servers, signer):
    a, b, _ = two_servers
    path = f"/cds-services/{SIGN}"
    replayed = signer.headers(path)
    first = httpx.post(f"{a}{path}", json={}, headers=replayed)  # an empty call: its token is still spent
    assert first.status_code != 401, first.text
    again = httpx.post(f"{b}{path}", json={}, headers=replayed)
    assert again.status_code == 401 and "used before" in again.json()["detail"]
    calls = [httpx.post(f"{server}{path}", json={}, headers=signer.headers(path)).status_code
             for server in (a, b) * (PER_MINUTE // 2)]  # two calls spent above (a replay counts too)
    assert calls == [first.status_code] * (PER_MINUTE - 2) + [429] * 2
