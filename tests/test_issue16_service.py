"""Issue 16, the findings about the service around FHIR, played by a hostile client: the sign-in
limit dodged with X-Forwarded-For (9), patient ids and tracebacks in the log (10), and what a new
user found in the API documentation (12: /redoc's CDN logo, the key sentence, /health's schema).

Findings 9 and 12's browser check use real ``coverage-criteria serve`` processes (servers.py).
"""

from __future__ import annotations

import http.server
import io
import logging
import os
import re
import threading

import httpx
import pytest

from review_browser import chromium, missing_browser
from servers import ROOT, start_server
from service.settings import Settings
from service.store.database import Database
from service.store.keys import create_key
from service.web.middleware import SafeLogRecords, make_logs_safe, url_without_ids

PATIENT_ID = "PT-8842-SECRET"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def serve(folder, **env_extra: str):
    """A real server with a reviewer key and one evaluation; returns (process, base URL, reviewer key)."""
    url = f"sqlite:///{folder / 'coverage-criteria.db'}"
    database = Database(url)
    database.migrate()
    reviewer = create_key(database, "reviewer")[1]
    database.dispose()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_CRITERIA_")},
           "COVERAGE_CRITERIA_DATA_DIR": str(folder), "COVERAGE_CRITERIA_DATABASE_URL": url, **env_extra}
    server, base_url = start_server(env, folder / "server.log")
    return server, base_url, reviewer


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    server, base_url, reviewer = serve(tmp_path_factory.mktemp("plain"))
    yield base_url, reviewer
    server.terminate()
    server.wait(timeout=60)


@pytest.fixture(scope="module")
def proxied_server(tmp_path_factory):
    server, base_url, reviewer = serve(tmp_path_factory.mktemp("proxied"),
                                       COVERAGE_CRITERIA_TRUSTED_PROXIES="127.0.0.1, ::1")
    yield base_url, reviewer
    server.terminate()
    server.wait(timeout=60)


def sign_in_attempts(base_url: str, forwarded_for: list[str], key: str = "cc_wrong") -> list[int]:
    """One sign-in attempt per X-Forwarded-For value, each with a fresh form; their statuses."""
    statuses = []
    with httpx.Client(base_url=base_url) as browser:
        for address in forwarded_for:
            form = browser.get("/review")
            answer = browser.post("/review/sign-in", headers={"X-Forwarded-For": address},
                                  data={"key": key, "csrf_token": CSRF.search(form.text).group(1),
                                        "next": "/review/evaluations"})
            statuses.append(answer.status_code)
    return statuses


# --- 9. X-Forwarded-For only from trusted proxies --------------------------------------------------


def test_finding_9_rotating_x_forwarded_for_from_a_loopback_peer_does_not_dodge_the_sign_in_limit(plain_server):
    base_url, _ = plain_server

    statuses = sign_in_attempts(base_url, [f"203.0.113.{i}" for i in range(11)])

    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429


def test_finding_9_x_forwarded_proto_from_an_untrusted_peer_does_not_make_cookies_secure(plain_server):
    base_url, _ = plain_server

    form = httpx.get(f"{base_url}/review", headers={"X-Forwarded-Proto": "https"})

    assert "secure" not in form.headers["set-cookie"].lower()


def test_finding_9_a_listed_proxy_is_believed_client_by_client(proxied_server):
    base_url, _ = proxied_server

    rotated = sign_in_attempts(base_url, [f"198.51.100.{i}" for i in range(11)])
    one_client = sign_in_attempts(base_url, ["192.0.2.7"] * 11)
    spoofed_behind_proxy = sign_in_attempts(base_url, [f"10.9.9.{i}, 192.0.2.8" for i in range(11)])

    assert 429 not in rotated
    assert one_client[10] == 429
    assert spoofed_behind_proxy[10] == 429  # only the address the proxy saw counts, not what the client wrote


@pytest.mark.parametrize("value", ["localhost", "10.0.0.0/33", "*", "127.0.0.1;10.0.0.1"])
def test_finding_9_a_mistyped_trusted_proxy_list_stops_the_service_naming_it(tmp_path, value):
    with pytest.raises(ValueError, match="COVERAGE_CRITERIA_TRUSTED_PROXIES"):
        Settings.from_env({"COVERAGE_CRITERIA_DATA_DIR": str(tmp_path), "COVERAGE_CRITERIA_TRUSTED_PROXIES": value})


def test_finding_9_without_the_setting_no_proxy_is_trusted(tmp_path):
    assert Settings.from_env({"COVERAGE_CRITERIA_DATA_DIR": str(tmp_path)}).trusted_proxies == ()


# --- 10. no patient id in any log line, tracebacks escaped ---------------------------------------


class _FhirServer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = b'{"resourceType": "Bundle", "type": "searchset"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Location", f"/fhir/Patient/{PATIENT_ID}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def ehr():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FhirServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    server.shutdown()


def test_finding_10_the_ehr_clients_requests_leave_no_patient_id_in_the_log_at_any_level(ehr, caplog):
    make_logs_safe()
    for name in ("httpx", "httpcore", "httpcore.http11", "httpcore.connection"):
        logging.getLogger(name).setLevel(logging.DEBUG)  # an operator turning everything up
    with caplog.at_level(logging.DEBUG):
        with httpx.Client() as client:
            client.get(f"{ehr}/Patient/{PATIENT_ID}")
            client.get(f"{ehr}/Observation", params={"patient": PATIENT_ID, "code": "72514-3"})

    assert any(record.name == "httpx" for record in caplog.records)  # it did log its requests
    assert [record.getMessage() for record in caplog.records if PATIENT_ID in record.getMessage()] == []
    make_logs_safe()  # httpcore's levels back to warnings


def test_finding_10_an_httpx_warning_names_the_ehr_without_the_patient():
    record = logging.LogRecord("httpx", logging.WARNING, __file__, 1, "HTTP Request: %s %s", (
        "GET", f"https://user:pw@ehr.example/fhir/Observation?patient={PATIENT_ID}"), None)

    assert SafeLogRecords().filter(record)
    assert record.getMessage() == "HTTP Request: GET https://ehr.example/fhir/Observation?..."


@pytest.mark.parametrize("url, logged", [
    (f"http://127.0.0.1:9102/fhir/Patient/{PATIENT_ID}", "http://127.0.0.1:9102/fhir/Patient/..."),
    (f"http://[::1]:8080/r4/Patient/{PATIENT_ID}/_history/2", "http://[::1]:8080/r4/Patient/..."),
    ("https://ehr.example/fhir/metadata", "https://ehr.example/fhir/metadata"),
    ("http://ehr:99999999/x", "(a URL)"),
])
def test_finding_10_urls_are_logged_up_to_their_resource_type(url, logged):
    assert url_without_ids(url) == logged


def test_finding_10_a_traceback_is_one_escaped_line_without_the_exceptions_message():
    from service.app import _log_config

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SafeLogRecords())
    config = _log_config()
    handler.setFormatter(logging.Formatter(config["formatters"]["default"]["fmt"].replace("%(levelprefix)s",
                                                                                             "%(levelname)s:")))
    logger = logging.getLogger("uvicorn.error.test-finding-10")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"bad reference Patient/{PATIENT_ID}\nINFO:     GET /forged 200")
        except ValueError:
            logger.exception("Exception in ASGI application\n")
    finally:
        logger.removeHandler(handler)

    text = stream.getvalue()
    assert text.count("\n") == 1 and text.isascii()
    assert "Traceback" not in text and PATIENT_ID not in text and "/forged" not in text
    assert "builtins.ValueError at " in text and "test_issue16_service.py:" in text


def test_finding_10_serve_sends_every_library_through_the_escaping_filter_and_quiets_httpcore():
    from service.app import _log_config

    config = _log_config()

    assert config["root"]["handlers"] == ["default"]
    assert config["loggers"]["httpcore"]["level"] == config["loggers"]["httpcore.http11"]["level"] == "WARNING"


# --- 12. the API documentation --------------------------------------------------------------------


def test_finding_12_redoc_is_served_without_the_redocly_cdn_and_with_a_policy(client):
    page = client.get("/redoc")
    [script] = re.findall(r'<script src="([^"]+)"', page.text)
    bundle = client.get(script)

    assert bundle.status_code == 200 and b"ReDoc" in bundle.content
    assert b"cdn.redoc.ly" not in bundle.content
    for path in ("/redoc", "/docs"):
        policy = client.get(path).headers["content-security-policy"]
        assert "default-src 'self'" in policy and "img-src 'self' data:" in policy


def test_finding_12_no_page_loads_anything_from_another_host_in_a_real_browser(plain_server):
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    base_url, reviewer = plain_server
    loaded: list[str] = []
    with chromium() as browser:
        page = browser.new_page()
        page.on("request", lambda request: loaded.append(request.url))
        for path, ready in (("/docs", ".opblock"), ("/redoc", "[role=menuitem], .menu-content"),
                            ("/review", "#key")):
            page.goto(base_url + path)
            page.wait_for_selector(ready, timeout=60_000)
            page.wait_for_load_state("networkidle")
        page.fill("#key", reviewer)
        with page.expect_navigation():
            page.press("#key", "Enter")
        page.wait_for_load_state("networkidle")

    elsewhere = [url for url in loaded if not url.startswith((base_url + "/", "data:", "blob:"))]
    assert any(url.endswith("/docs-assets/redoc.standalone.js") for url in loaded)
    assert elsewhere == []


def test_finding_12_what_the_openapi_text_says_each_operation_needs_is_true(client, intake_key, reviewer_key):
    schema = client.get("/openapi.json").json()
    assert "Every endpoint except" not in schema["info"]["description"]
    for path, operations in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method, operation in operations.items():
            says = operation["description"]
            anonymous = client.request(method.upper(), concrete, headers={"Content-Type": "application/json"},
                                       content=b"{}" if method == "post" else None)
            if operation["security"] == []:
                assert "Needs no API key or token." in says, path
                assert anonymous.status_code not in (401, 403), (method, path)
            elif "x-required-role" in operation:
                assert f"with the `{operation['x-required-role']}`" in says, path
                assert anonymous.status_code == 401, (method, path)
            else:
                assert "CDS Hooks client's signed JWT" in says, path
                assert anonymous.status_code == 401, (method, path)


def test_finding_12_health_documents_its_answer(client):
    schema = client.get("/openapi.json").json()
    health = schema["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    ready = schema["paths"]["/health/ready"]["get"]["responses"]
    components = schema["components"]["schemas"]

    assert health == {"$ref": "#/components/schemas/Health"}
    assert components["Health"]["properties"]["status"] == {"type": "string", "const": "ok", "title": "Status"}
    assert components["Health"]["required"] == ["status"]
    assert ready["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Readiness"}
    assert set(components["ReadinessChecks"]["properties"]) == {"database", "rules"}
    assert client.get("/health").json() == {"status": "ok"}


# --- 14. what a new user looks for is written down ------------------------------------------------


def test_finding_14_docs_api_lists_every_operation_as_the_openapi_names_it(client):
    docs = (ROOT / "docs" / "api.md").read_text()
    first_cells = re.findall(r"^\| ((?:`[A-Z]+ [^`]*`(?:, )?)+) \|", docs, flags=re.MULTILINE)
    documented = {(method, path.split("?")[0]) for cell in first_cells
                  for method, path in re.findall(r"`([A-Z]+) ([^`]*)`", cell)}
    paths = client.get("/openapi.json").json()["paths"]

    missing = [(method.upper(), path) for path, operations in paths.items() for method in operations
               if (method.upper(), path) not in documented]
    assert missing == []


def test_finding_14_the_cli_reference_has_rules_diff_and_rules_impact_and_the_default_policy():
    docs = (ROOT / "docs" / "api.md").read_text()
    readme = (ROOT / "README.md").read_text()

    assert "| `rules diff OLD NEW" in docs and "| `rules impact CANDIDATE_DIR" in docs
    assert "COVERAGE_CRITERIA_DEFAULT_POLICY" in docs
    assert "| `COVERAGE_CRITERIA_DEFAULT_POLICY` |" in readme


def test_finding_14_serve_says_where_it_listens():
    from service.cli import build_parser

    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    readme = (ROOT / "README.md").read_text()

    assert "127.0.0.1:8000" in serve.format_help() and "127.0.0.1:8000" in serve.description
    assert "listens on\n**127.0.0.1:8000**" in readme or "listens on **127.0.0.1:8000**" in readme
