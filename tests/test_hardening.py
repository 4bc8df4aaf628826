"""What a hostile client and a new user found (issue 7): log forging, tracebacks, ambiguous
JSON, error amplification, file permissions, caching, retries, paging, health and docs.

Most tests use the real app on a real database (api_fixtures); those about the log, a client
hanging up and the probe script use a real ``coverage-criteria serve`` process (servers.py).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

import service.store.evaluations as stored_evaluations
from service.app import create_app
from service.web.middleware import SafeLogRecords, make_logs_safe, printable
from service.errors import MAX_LISTED_ERRORS, InvalidInput
from service.json_input import parse_json
from service.settings import Settings
from service.store.database import Database
from service.store.tables import Evaluation
from service.store.idempotency import IdempotencyRecord
from service.store.keys import create_key
from servers import ROOT, start_server

FORGED_LINE = "INFO:     POST /v1/evaluations 201 key=6addceaacb80ddaa 4.2ms"
FORGING_PATH = "/x%0AINFO:%20%20%20%20%20POST%20/v1/evaluations%20201%20key=6addceaacb80ddaa%204.2ms"


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def stored_count(database: Database, model=Evaluation) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def cli(*args: str, stdin: bytes | None = None, cwd: Path = ROOT, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "service.cli", *args], input=stdin, capture_output=True,
                          cwd=cwd, env=env, timeout=120)


# --- 1. the log ------------------------------------------------------------------------------


def test_printable_escapes_everything_outside_printable_ascii_and_the_backslash():
    assert printable("GET /ok?x=1 [A-Z]~") == "GET /ok?x=1 [A-Z]~"
    assert printable("a\nb\rc\x00d\x7fe\x1b") == "a\\x0ab\\x0dc\\x00d\\x7fe\\x1b"
    assert printable("\u202efdp\u200b\u0085é\U0001f600") == "\\u202efdp\\u200b\\x85\\xe9\\U0001f600"
    assert printable("\\x0a") == "\\\\x0a"  # an escape cannot be forged


def test_a_path_cannot_forge_or_break_a_line_of_the_access_log(client, caplog):
    with caplog.at_level(logging.INFO, logger="service.access"):
        client.get(FORGING_PATH)
        client.get("/nul%00byte")

    lines = [record.getMessage() for record in caplog.records if record.name == "service.access"]
    assert lines == [
        "GET /x\\x0aINFO:     POST /v1/evaluations 201 key=6addceaacb80ddaa 4.2ms 404 key=- " + lines[0].rsplit(" ", 1)[1],
        "GET /nul\\x00byte 404 key=- " + lines[1].rsplit(" ", 1)[1],
    ]


def test_uvicorns_access_log_is_escaped_too_and_keeps_no_query_string(caplog):
    make_logs_safe()
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/x\nforged\x00?external_id=SECRET", "1.1", 404
        )

    (message,) = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert message == '127.0.0.1:5 - "GET /x\\x0aforged\\x00 HTTP/1.1" 404'


def test_serves_log_config_escapes_records_of_any_logger():
    from service.app import _log_config

    config = _log_config()
    assert all(handler["filters"] == ["printable"] for handler in config["handlers"].values())
    record = logging.LogRecord("anything", logging.INFO, __file__, 1, "value %s", ("a\nb",), None)
    assert SafeLogRecords().filter(record) and record.getMessage() == "value a\\x0ab"
    uvicorns = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application\n", (), None)
    assert SafeLogRecords().filter(uvicorns) and uvicorns.getMessage() == "Exception in ASGI application"


# --- 2 and 5. reading JSON -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (b'{"external_id": "A", "external_id": "B"}', "external_id"),
        (b'{"external_id": "A", "low_back_pain": {"nrs": 7, "nrs": 2}}', "low_back_pain.nrs"),
        (b'[{"external_id": "A"}, {"external_id": "B", "patient": {"bmi": 20, "bmi": 20}}]', "[1].patient.bmi"),
    ],
)
def test_a_repeated_key_is_refused_naming_its_path(text, field):
    with pytest.raises(InvalidInput) as refused:
        parse_json(text)

    assert refused.value.errors == [{"field": field, "type": "duplicate_key",
                                     "message": "This key appears more than once in its object; send it once."}]


def test_a_repeated_key_is_refused_by_the_api_and_nothing_is_stored(client, database, intake_key):
    response = client.post("/v1/evaluations", headers={**auth(intake_key), "Content-Type": "application/json"},
                           content=b'{"external_id": "A", "low_back_pain": {"nrs": 7, "nrs": 2}}')

    assert response.status_code == 422
    assert [(e["field"], e["type"]) for e in response.json()["errors"]] == [("low_back_pain.nrs", "duplicate_key")]
    assert stored_count(database) == 0


UNREADABLE = {
    "deep nesting": b"[" * 10_000 + b"]" * 10_000,
    "5000-digit number": b'{"external_id": "X", "patient": {"age_years": ' + b"7" * 5000 + b"}}",
    "not UTF-8": b'{"external_id": "\xff"}',
    "repeated key": b'{"external_id": "A", "external_id": "B"}',
}


@pytest.mark.parametrize("name", UNREADABLE)
def test_the_cli_answers_unreadable_input_with_exit_2_and_one_line(tmp_path, name):
    path = tmp_path / "case.json"
    path.write_bytes(UNREADABLE[name])

    for result in (cli("evaluate", str(path)), cli("evaluate", "-", stdin=UNREADABLE[name])):
        assert result.returncode == 2, result.stderr
        assert result.stdout == b""
        assert "Traceback" not in result.stderr.decode()
        assert result.stderr.count(b"\n") == 1
        assert json.loads(result.stderr)["errors"][0]["field"] in ("body", "external_id")


def test_the_cli_and_the_api_give_the_same_message_for_a_repeated_key(client, intake_key, tmp_path):
    text = UNREADABLE["repeated key"]
    (tmp_path / "case.json").write_bytes(text)

    api = client.post("/v1/evaluations", content=text, headers={**auth(intake_key), "Content-Type": "application/json"})
    from_cli = cli("evaluate", str(tmp_path / "case.json"))

    assert json.loads(from_cli.stderr) == api.json()


# --- 3. error amplification ------------------------------------------------------------------


def test_an_error_body_lists_at_most_100_errors_and_says_how_many(client, intake_key, database):
    case = {"external_id": "X", **{f"unknown_{i}": 0 for i in range(5000)}}

    response = client.post("/v1/evaluations", json=case, headers=auth(intake_key))

    body = response.json()
    assert response.status_code == 422
    assert len(body["errors"]) == MAX_LISTED_ERRORS == 100
    assert body["error_count"] == 5000
    assert body["detail"] == "The case is invalid: 5000 field errors, the first 100 are listed."
    assert len(response.content) < 20_000
    assert stored_count(database) == 0


def test_a_few_errors_are_all_listed_with_their_count(client, intake_key):
    body = client.post("/v1/evaluations", json={"patient": {"bmi": 1}}, headers=auth(intake_key)).json()

    assert body["detail"] == "The case is invalid."
    assert body["error_count"] == len(body["errors"]) == 2


def test_query_errors_are_capped_by_the_same_shaping(client, reviewer_key):
    body = client.get("/v1/evaluations", params={"limit": "x"}, headers=auth(reviewer_key)).json()

    assert body["detail"] == "The request is invalid."
    assert body["error_count"] == 2
    assert {e["field"] for e in body["errors"]} == {"query.external_id", "query.limit"}


def test_the_cli_caps_the_errors_of_a_batch(tmp_path):
    (tmp_path / "batch.json").write_text(json.dumps([{"patient": {}}] * 300))

    result = cli("evaluate", str(tmp_path / "batch.json"))

    body = json.loads(result.stderr)
    assert result.returncode == 2
    assert (len(body["errors"]), body["error_count"]) == (100, 300)


# --- 8. file permissions ---------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_folder_is_made_0700_and_the_database_files_0600(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.umask(0o022)
    settings = Settings.from_env({})
    database = Database(settings.database_url)
    database.migrate()
    create_key(database, "intake")  # a write: the -wal and -shm files exist while the engine is open
    files = sorted(settings.data_dir.iterdir())

    assert mode(settings.data_dir) == 0o700
    assert [f.name for f in files] == ["coverage-criteria.db", "coverage-criteria.db-keys", "coverage-criteria.db-shm",
                                       "coverage-criteria.db-wal"]
    assert [mode(f) for f in files] == [0o600] * 4
    database.dispose()


def test_existing_database_files_readable_by_others_are_tightened(tmp_path):
    path = tmp_path / "old.db"
    Database(f"sqlite:///{path}").migrate()
    for file in tmp_path.iterdir():
        file.chmod(0o644)

    Database(f"sqlite:///{path}").dispose()

    assert [mode(f) for f in tmp_path.iterdir()] == [0o600] * len(list(tmp_path.iterdir()))


# --- 9. caching ------------------------------------------------------------------------------


def test_responses_holding_case_data_are_not_stored_by_caches(client, intake_key, reviewer_key, full_case):
    created = client.post("/v1/evaluations", json=full_case, headers=auth(intake_key))
    responses = [
        created,
        client.get(created.headers["location"], headers=auth(intake_key)),
        client.get("/v1/evaluations", params={"external_id": full_case["external_id"]}, headers=auth(reviewer_key)),
        client.post("/v1/evaluations", json={**full_case, "policy": "nothing"}, headers=auth(intake_key)),
    ]

    assert [r.status_code for r in responses] == [201, 200, 200, 422]
    assert [r.headers["cache-control"] for r in responses] == ["no-store"] * 4


# --- 10. idempotency -------------------------------------------------------------------------


def post(client, key, case, idempotency_key=None, **kwargs):
    headers = auth(key) | ({"Idempotency-Key": idempotency_key} if idempotency_key else {})
    return client.post("/v1/evaluations", json=case, headers=headers, **kwargs)


def test_a_retry_with_the_same_key_and_body_gets_the_first_response_and_stores_nothing(
        client, database, intake_key, full_case):
    first = post(client, intake_key, full_case, "retry-1")
    again = post(client, intake_key, full_case, "retry-1")

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert stored_count(database) == stored_count(database, IdempotencyRecord) == 1


def test_the_same_key_with_another_body_gets_409(client, database, intake_key, full_case):
    post(client, intake_key, full_case, "retry-2")
    full_case["low_back_pain"]["nrs"] = 3

    response = post(client, intake_key, full_case, "retry-2")

    assert response.status_code == 409
    assert "Idempotency-Key" in response.json()["detail"]
    assert stored_count(database) == 1


def test_idempotency_keys_are_scoped_to_the_api_key(client, database, intake_key, full_case):
    _, other = create_key(database, "intake")

    first, second = post(client, intake_key, full_case, "shared"), post(client, other, full_case, "shared")

    assert first.status_code == second.status_code == 201
    assert first.json()["evaluation_id"] != second.json()["evaluation_id"]
    assert "idempotent-replayed" not in second.headers


def test_without_the_header_every_post_is_a_new_evaluation(client, database, intake_key, full_case):
    post(client, intake_key, full_case), post(client, intake_key, full_case)

    assert stored_count(database) == 2


@pytest.mark.parametrize("value", ["", "a b", "ключ", "x" * 256, "tab\there"])
def test_a_malformed_idempotency_key_is_refused_naming_the_header(client, database, intake_key, full_case, value):
    response = client.post("/v1/evaluations", content=json.dumps(full_case).encode(),
                           headers={**auth(intake_key), "Content-Type": "application/json",
                                    "Idempotency-Key": value.encode("utf-8")})

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["headers.idempotency-key"]
    assert stored_count(database) == 0


def test_concurrent_retries_store_one_evaluation_and_all_get_its_response(client, database, intake_key, full_case):
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: post(client, intake_key, full_case, "burst"), range(8)))

    assert [r.status_code for r in responses] == [201] * 8
    assert len({r.content for r in responses}) == 1
    assert stored_count(database) == stored_count(database, IdempotencyRecord) == 1


def test_a_key_is_kept_24_hours_and_may_be_used_again_after(client, database, intake_key, full_case):
    first = post(client, intake_key, full_case, "daily")
    with database.write() as connection:
        connection.execute(update(IdempotencyRecord).values(
            created_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=23, minutes=59)))
    assert post(client, intake_key, full_case, "daily").content == first.content
    with database.write() as connection:
        connection.execute(update(IdempotencyRecord).values(
            created_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=24, minutes=1)))

    later = post(client, intake_key, full_case, "daily")

    assert later.status_code == 201 and "idempotent-replayed" not in later.headers
    assert later.json()["evaluation_id"] != first.json()["evaluation_id"]
    assert stored_count(database) == 2 and stored_count(database, IdempotencyRecord) == 1


def test_the_idempotency_record_is_stored_in_the_evaluations_transaction(database, full_case, evaluator):
    from service.evaluations.submit import evaluate_and_store
    from service.store.idempotency import IdempotencyClaim

    key_id, _ = create_key(database, "intake")
    claim = IdempotencyClaim(key_id, "k", "0" * 64)
    first = evaluate_and_store(evaluator, database, full_case, key_id, claim, organization="default")

    # The key is taken: the second evaluation is not stored either, and no error breaks the transaction.
    assert evaluate_and_store(evaluator, database, full_case, key_id, claim, organization="default") is None
    assert stored_count(database) == stored_count(database, IdempotencyRecord) == 1
    assert claim.previous(database).evaluation_id == first[0]


# --- 11. paging ------------------------------------------------------------------------------


def listing(client, key, external_id, **params):
    response = client.get("/v1/evaluations", params={"external_id": external_id, **params}, headers=auth(key))
    assert response.status_code == 200, response.text
    return response.json()


def all_pages(client, key, external_id, limit):
    pages, cursor = [], None
    while True:
        page = listing(client, key, external_id, limit=limit, **({"cursor": cursor} if cursor else {}))
        pages.append([r["evaluation_id"] for r in page["evaluations"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


def test_results_come_a_page_at_a_time_newest_first(client, intake_key, reviewer_key, full_case):
    ids = [post(client, intake_key, full_case).json()["evaluation_id"] for _ in range(7)]

    assert all_pages(client, reviewer_key, full_case["external_id"], 3) == [ids[:-4:-1], ids[3:0:-1], ids[:1]]
    default = listing(client, reviewer_key, full_case["external_id"])
    assert [r["evaluation_id"] for r in default["evaluations"]] == ids[::-1]
    assert default["next_cursor"] is None


def test_paging_is_stable_when_results_share_a_timestamp(client, intake_key, reviewer_key, full_case, monkeypatch):
    moment = datetime.datetime(2026, 11, 22, 3, 0, tzinfo=datetime.UTC)
    monkeypatch.setattr(stored_evaluations, "utc_now", lambda: moment)
    ids = [post(client, intake_key, full_case).json()["evaluation_id"] for _ in range(5)]

    pages = all_pages(client, reviewer_key, full_case["external_id"], 2)

    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(sum(pages, [])) == sorted(ids)
    assert sum(pages, []) == sorted(ids, reverse=True)  # ties in id order, newest-first direction


def test_the_default_page_is_50_and_the_largest_500(client, intake_key, reviewer_key, full_case, database):
    from service.store.evaluations import save_evaluation

    key_id = create_key(database, "intake")[0]
    for number in range(501):
        save_evaluation(database, evaluation_id=f"e-{number:04d}", external_id="MANY", policy_id="p",
                        policy_version="1", key_id=key_id, organization="default", case_json="{}", result_json=f'{{"n":{number}}}')

    assert len(listing(client, reviewer_key, "MANY")["evaluations"]) == 50
    full = listing(client, reviewer_key, "MANY", limit=500)
    assert len(full["evaluations"]) == 500 and full["next_cursor"] is not None
    assert len(listing(client, reviewer_key, "MANY", limit=500, cursor=full["next_cursor"])["evaluations"]) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "query.limit"), ({"limit": 501}, "query.limit"), ({"cursor": "AAAA"}, "query.cursor"),
     ({"cursor": "not base64!"}, "query.cursor"), ({"cursor": "WyJ4Il0"}, "query.cursor")],
)
def test_a_bad_limit_or_cursor_is_refused_naming_it(client, reviewer_key, params, field):
    response = client.get("/v1/evaluations", params={"external_id": "X", **params}, headers=auth(reviewer_key))

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


# --- 12. health ------------------------------------------------------------------------------


def test_head_health_answers_200(client):
    response = client.head("/health")

    assert response.status_code == 200
    assert response.content == b""


def test_readiness_checks_the_database_and_the_rules(client):
    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "rules": "ok"}}


def test_readiness_is_503_while_the_database_is_unreachable(settings, evaluator, database):
    with TestClient(create_app(settings, evaluator)) as client:
        client.app.state.database = Database(f"postgresql://postgres@127.0.0.1:{closed_port()}/nothing")
        response = client.get("/health/ready")
        alive = client.get("/health")

    assert response.status_code == 503
    assert response.json() == {"status": "not_ready", "checks": {"database": "unavailable", "rules": "ok"}}
    assert alive.status_code == 200


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("path", ["/health/", "/v1/policies/", "/v1/evaluations/"])
def test_a_trailing_slash_gets_a_json_404_not_a_redirect(client, intake_key, path):
    response = client.get(path, headers=auth(intake_key), follow_redirects=False)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"]


# --- 13. docs without a CDN ------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_load_every_asset_from_the_service_itself(client, page):
    html = client.get(page).text
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    remote = re.findall(r"https?://[^\s\"']+", html)

    assert assets and not remote
    assert page == "/redoc" or '"validatorUrl": null' in html
    for asset in assets:
        assert asset.startswith("/") and client.get(asset).status_code == 200, asset


# --- 14. which database keys go into --------------------------------------------------------


def test_keys_create_says_which_database_it_used_and_that_it_is_new(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_CRITERIA_")}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    first = cli("keys", "create", "--role", "intake", cwd=elsewhere, env=env)
    second = cli("keys", "create", "--role", "intake", cwd=elsewhere, env=env)

    database = elsewhere / "data" / "coverage-criteria.db"
    assert first.returncode == second.returncode == 0
    assert f"database: {database}\n" in first.stderr.decode()
    assert "created just now" in first.stderr.decode()
    assert f"database: {database}\n" in second.stderr.decode()
    assert "created just now" not in second.stderr.decode()
    assert first.stdout.decode().startswith("cc_")


# --- 4 and the probe: a real server ---------------------------------------------------------


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """``coverage-criteria serve`` on a loopback port, its log in a file, with an intake key and
    a reviewer key."""
    folder = tmp_path_factory.mktemp("server")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_CRITERIA_")},
           "COVERAGE_CRITERIA_DATA_DIR": str(folder / "data")}
    keys = [cli("keys", "create", "--role", role, env=env).stdout.decode().strip() for role in ("intake", "reviewer")]
    log = folder / "server.log"
    server, base_url = start_server(env, log)
    new_lines(log, 0, "GET /health 200")  # start_server's polls are in the log before any test reads it
    yield base_url, keys, log
    server.terminate()
    server.wait(timeout=60)


def new_lines(log: Path, offset: int, wait_for: str) -> list[str]:
    """The server's log lines after ``offset``, once one of them holds ``wait_for``."""
    deadline = time.monotonic() + 20
    while True:
        lines = log.read_bytes()[offset:].decode("utf-8", "backslashreplace").splitlines()
        if any(wait_for in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_a_client_hanging_up_mid_body_is_one_log_line_not_a_500(real_server):
    base_url, (intake, _), log = real_server
    offset = log.stat().st_size
    port = int(base_url.rsplit(":", 1)[1])

    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"POST /v1/evaluations HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                           + f"X-API-Key: {intake}\r\nContent-Length: 5000\r\n\r\n".encode() + b'{"external_id": ')
        time.sleep(0.3)

    lines = new_lines(log, offset, "POST /v1/evaluations 499")
    assert len(lines) == 1, lines
    assert re.fullmatch(r"INFO: +POST /v1/evaluations 499 key=[0-9a-f]{16} \d+\.\dms", lines[0])


def test_a_forging_path_writes_one_escaped_line_to_the_servers_log(real_server):
    base_url, (intake, _), log = real_server
    offset = log.stat().st_size

    with httpx.Client() as http:
        assert http.get(base_url + FORGING_PATH).status_code == 404

    lines = new_lines(log, offset, "GET /x")
    assert len(lines) == 1 and FORGED_LINE not in lines and "\\x0aINFO:" in lines[0]


def test_swagger_ui_renders_in_a_real_browser_that_cannot_reach_any_other_host(real_server):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on this machine")
    base_url, _, _ = real_server

    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # every CDN unreachable
         "--dump-dom", f"{base_url}/docs"],
        capture_output=True, text=True, timeout=120,
    ).stdout

    assert 'class="title">Coverage criteria' in dom  # Swagger UI ran and read /openapi.json
    assert set(re.findall(r'data-path="([^"]+)"', dom)) >= {"/v1/evaluations", "/health/ready"}


def test_the_hostile_probe_finds_nothing(real_server):
    base_url, (intake, reviewer), log = real_server

    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "probe_hostile.py"), "--base-url", base_url, "--intake-key", intake,
         "--reviewer-key", reviewer, "--log", str(log)],
        capture_output=True, text=True, timeout=300,
    )

    report = json.loads(result.stdout)
    assert report["problems"] == [], report
    assert report["requests"] >= 30
    assert result.returncode == 0


# --- 18. the documentation lives in the repository ------------------------------------------


def test_the_api_documentation_is_in_the_repository_and_covers_every_endpoint(client):
    docs = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    paths = client.get("/openapi.json").json()["paths"]

    assert "docs/api.md" in readme and "shared/contract.md" not in readme
    missing = [path for path in paths if path.split("{")[0].rstrip("/") not in docs]
    assert missing == []
    for name in ("Idempotency-Key", "next_cursor", "error_count", "Cache-Control: no-store", "/health/ready"):
        assert name in docs
