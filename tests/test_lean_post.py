"""The lean path of POST /v1/evaluations (service/api/lean_post.py) answers every JSON request
exactly as the FastAPI route does: the same status, headers and body for each kind of request,
valid or not, with the same access log line; and it is the lean path that answers them."""

import json
import logging
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.api.lean_post import LeanEvaluationPost
from service.app import create_app
from service.settings import Settings
from service.store.audit import AuditRecord
from service.store.keys import create_key

IDS = re.compile(rb'"evaluation_id":"[0-9a-f-]{36}"|"evaluated_at":"[^"]*"|/v1/evaluations/[0-9a-f-]{36}')


def without_lean_path(app):
    app.user_middleware = [m for m in app.user_middleware if m.cls is not LeanEvaluationPost]
    return app


@pytest.fixture(params=[0, 3], ids=["unlimited", "3 a minute"])
def clients(request, database_url, database, evaluator, tmp_path):
    """The app, and the same app without the lean path (a body limit of 4 kB; a rate limit)."""
    settings = Settings(data_dir=tmp_path, database_url=database_url, max_body_bytes=4096,
                        rate_limit_per_minute=request.param)
    with TestClient(create_app(settings, evaluator)) as lean, \
            TestClient(without_lean_path(create_app(settings, evaluator))) as routed:
        yield lean, routed


def answer(response) -> tuple:
    headers = {k: IDS.sub(b"ID", v.encode()).decode() for k, v in response.headers.items() if k != "date"}
    return response.status_code, headers, IDS.sub(b"ID", response.content)


def requests(intake: str, reviewer: str, full_case: dict) -> list[tuple[str, dict, bytes]]:
    case = json.dumps(full_case).encode()
    json_type = {"Content-Type": "application/json"}
    return [
        ("valid", {**json_type, "X-API-Key": intake}, case),
        ("valid, +json type", {"Content-Type": "application/merge-patch+json; charset=utf-8", "X-API-Key": intake}, case),
        ("no key", json_type, case),
        ("bearer key", {**json_type, "Authorization": f"Bearer {intake}"}, case),
        ("another scheme", {**json_type, "Authorization": f"Basic {intake}"}, case),
        ("both, X-API-Key first", {**json_type, "X-API-Key": "cc_0000000000000000_nope", "Authorization": f"Bearer {intake}"}, case),
        ("unknown key", {**json_type, "X-API-Key": "cc_0000000000000000_nope"}, case),
        ("reviewer key", {**json_type, "X-API-Key": reviewer}, case),
        ("not json", {**json_type, "X-API-Key": intake}, b'{"external_id": '),
        ("repeated key", {**json_type, "X-API-Key": intake}, b'{"external_id": "a", "external_id": "b"}'),
        ("text/plain", {"Content-Type": "text/plain", "X-API-Key": intake}, case),
        ("invalid case", {**json_type, "X-API-Key": intake}, json.dumps({"external_id": "x", "patient": {"age_years": "7"}}).encode()),
        ("too large", {**json_type, "X-API-Key": intake}, b" " * 5000 + case),
        ("bad idempotency key", {**json_type, "X-API-Key": intake, "Idempotency-Key": "a b"}, case),
        ("idempotency key", {**json_type, "X-API-Key": intake, "Idempotency-Key": "k-1"}, case),
        ("its retry", {**json_type, "X-API-Key": intake, "Idempotency-Key": "k-1"}, case),
        ("its key, another body", {**json_type, "X-API-Key": intake, "Idempotency-Key": "k-1"}, case.replace(b"52", b"53")),
    ]


def audit_trail(database) -> list[tuple]:
    """Every audit record so far, in the order made, with what distinguishes one app's from the other's left out."""
    with database.session() as session:
        records = session.scalars(select(AuditRecord).order_by(AuditRecord.id)).all()
    return [(r.action, r.resource, r.status, r.resource_id is None, r.actor_role, r.organization, r.client_ip)
            for r in records]


def test_each_kind_of_request_gets_the_routes_answer(clients, database, full_case, caplog):
    lean, routed = clients
    answers = {}
    for client in (lean, routed):
        intake, reviewer = create_key(database, "intake")[1], create_key(database, "reviewer")[1]
        caplog.clear()
        audited_before = len(audit_trail(database))
        with caplog.at_level(logging.INFO, logger="service.access"):
            got = [(name, answer(client.post("/v1/evaluations", headers=headers, content=body)))
                   for name, headers, body in requests(intake, reviewer, full_case)]
        lines = [re.sub(r"key=[0-9a-f]{16}", "key=ID", re.sub(r"[\d.]+ms$", "", r.getMessage()))
                 for r in caplog.records if r.name == "service.access"]
        answers[client is lean] = [(name, *figures) for name, figures in got], lines, audit_trail(database)[audited_before:]
    (lean_answers, lean_log, lean_audit), (routed_answers, routed_log, routed_audit) = answers[True], answers[False]
    # one record a request, alike (but the 413: the body limit answers before any route)
    assert lean_audit == routed_audit and len(lean_audit) == len(lean_answers) - 1
    for mine, theirs in zip(lean_answers, routed_answers):
        assert mine == theirs
    statuses = [201, 201, 401, 201, 401, 401, 401, 201, 422, 422, 422, 422, 413, 422, 201, 201, 409]
    if lean.app.state.rate_limiter is not None:  # the intake key's fourth request on
        statuses = [201, 201, 401, 201, 401, 401, 401, 201, 429, 429, 429, 429, 413, 429, 429, 429, 429]  # 413 first
    assert [status for _, status, *_ in lean_answers] == statuses
    assert lean_log == routed_log and len(lean_log) == 17 and "201 key=ID" in lean_log[0]


def test_the_rate_limit_answers_alike(clients, database, full_case):
    if clients[0].app.state.rate_limiter is None:
        pytest.skip("no rate limit in this variant")
    for client in clients:
        key = create_key(database, "intake")[1]
        statuses = [client.post("/v1/evaluations", json=full_case, headers={"X-API-Key": key}) for _ in range(4)]
        assert [r.status_code for r in statuses] == [201, 201, 201, 429]
        assert int(statuses[-1].headers["retry-after"]) > 0


def test_json_posts_take_the_lean_path_and_bundles_the_route(clients, database, full_case, monkeypatch):
    """The route is not reached for a JSON case (FastAPI solves no dependencies for it); a FHIR
    Bundle still goes through the route."""
    import service.api.routers.evaluations as routes

    lean, _ = clients
    key = create_key(database, "intake")[1]
    called = []
    original = routes.post_evaluation

    async def counted(*args, **kwargs):
        called.append(args[3])  # the path
        return await original(*args, **kwargs)

    monkeypatch.setattr(routes, "post_evaluation", counted)  # what the route calls
    assert lean.post("/v1/evaluations", json=full_case, headers={"X-API-Key": key}).status_code == 201
    assert called == []
    bundle = lean.post("/v1/evaluations", content=b'{"resourceType": "Bundle",',
                       headers={"X-API-Key": key, "Content-Type": "application/fhir+json"})
    assert bundle.status_code == 400 and called == ["/v1/evaluations"]


def test_what_start_up_built_is_kept_out_of_the_collectors_way(settings, evaluator, database):
    import gc

    gc.unfreeze()
    with TestClient(create_app(settings, evaluator)) as client:
        assert client.get("/health").status_code == 200
        assert gc.get_freeze_count() > 10_000
