"""Security basics: a rate limit per key, no CORS, roles in the OpenAPI, and no case contents in
any log output (uvicorn, SQLAlchemy, the service), even at DEBUG."""

import dataclasses
import logging
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import event

from service.app import create_app, uvicorn_options
from service.store.keys import create_key
from service.web.ratelimit import RateLimiter
from service.settings import DEFAULT_RATE_LIMIT_PER_MINUTE, Settings

POLICY_ID = "isass-2023-restorative-neurostimulation"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_may_burst_up_to_its_limit_then_waits_for_tokens_to_refill():
    clock = FakeClock()
    limiter = RateLimiter(per_minute=6, clock=clock)  # one token every 10 s

    assert [limiter.retry_after("a") for _ in range(6)] == [0] * 6
    assert limiter.retry_after("a") == 10
    assert limiter.retry_after("b") == 0  # each key has its own bucket
    clock.now += 4
    assert limiter.retry_after("a") == 6
    clock.now += 6
    assert limiter.retry_after("a") == 0
    clock.now += 3600  # a long pause refills only up to the burst size
    assert [limiter.retry_after("a") for _ in range(7)] == [0] * 6 + [10]


def test_the_rate_limit_is_on_by_default_and_zero_turns_it_off(tmp_path):
    assert Settings.from_env({"COVERAGE_CRITERIA_DATA_DIR": str(tmp_path)}).rate_limit_per_minute == (
        DEFAULT_RATE_LIMIT_PER_MINUTE
    )
    off = Settings.from_env({"COVERAGE_CRITERIA_DATA_DIR": str(tmp_path), "COVERAGE_CRITERIA_RATE_LIMIT_PER_MINUTE": "0"})
    assert off.rate_limit_per_minute == 0
    with pytest.raises(ValueError, match="COVERAGE_CRITERIA_RATE_LIMIT_PER_MINUTE"):
        Settings.from_env({"COVERAGE_CRITERIA_DATA_DIR": str(tmp_path), "COVERAGE_CRITERIA_RATE_LIMIT_PER_MINUTE": "-1"})


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(settings, evaluator, database):
    _, busy = create_key(database, "intake")
    _, other = create_key(database, "intake")

    with TestClient(create_app(dataclasses.replace(settings, rate_limit_per_minute=3), evaluator)) as client:
        allowed = [client.get("/v1/policies", headers={"X-API-Key": busy}).status_code for _ in range(3)]
        refused = client.get("/v1/policies", headers={"X-API-Key": busy})
        others = client.get("/v1/policies", headers={"X-API-Key": other})

    assert allowed == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json() == {"detail": f"This key is limited to 3 requests a minute; retry after {refused.headers['retry-after']} s."}
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    assert others.status_code == 200


def test_cors_is_off_no_origin_is_allowed(client, intake_key):
    origin = {"Origin": "https://elsewhere.example"}
    preflight = client.options(
        "/v1/evaluations",
        headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "X-API-Key"},
    )
    responses = [
        preflight,
        client.get("/health", headers=origin),
        client.get("/v1/policies", headers={**origin, "X-API-Key": intake_key}),
    ]

    assert preflight.status_code == 405
    for response in responses:
        assert not [name for name in response.headers if name.lower().startswith("access-control-")]


def test_the_openapi_names_the_role_each_operation_needs(client):
    paths = client.get("/openapi.json").json()["paths"]

    roles = {
        (method.upper(), path): operation.get("x-required-role")
        for path, operations in paths.items()
        for method, operation in operations.items()
    }
    assert roles == {
        ("GET", "/health"): None,
        ("GET", "/health/ready"): None,
        ("POST", "/v1/evaluations"): "intake",
        ("GET", "/v1/evaluations"): "reviewer",
        ("GET", "/v1/evaluations/{evaluation_id}"): "intake",
        ("GET", "/v1/policies"): "intake",
        ("GET", "/v1/policies/{policy_id}"): "intake",
        ("POST", "/v1/evaluations/{evaluation_id}/notes"): "reviewer",
        ("GET", "/v1/evaluations/{evaluation_id}/notes"): "reviewer",
        ("GET", "/v1/evaluations/{evaluation_id}/questionnaire"): "intake",
        ("GET", "/v1/policies/{policy_id}/questionnaire"): "intake",
        ("GET", "/v1/requests"): "reviewer",
        ("GET", "/v1/requests/{request_id}"): "intake",
        ("PUT", "/v1/requests/{request_id}/assignee"): "reviewer",
        ("GET", "/v1/evaluations/{evaluation_id}/changes"): "reviewer",
        ("POST", "/v1/requests/{request_id}/determinations"): "reviewer",
        ("GET", "/v1/requests/{request_id}/determinations"): "intake",
        ("GET", "/v1/metrics"): "reviewer",
        ("GET", "/v1/audit"): "auditor",
        ("GET", "/cds-services"): None,
        ("POST", "/cds-services/{service_id}"): None,
        ("POST", "/cds-services/{service_id}/feedback"): None,
        ("GET", "/fhir/metadata"): None,
        ("POST", "/fhir/Questionnaire/$questionnaire-package"): "intake",
        ("POST", "/fhir/$questionnaire-package"): "intake",
        ("POST", "/fhir/QuestionnaireResponse"): "intake",
        ("GET", "/fhir/ValueSet/$expand"): "intake",
        ("POST", "/fhir/ValueSet/$expand"): "intake",
        ("GET", "/fhir/ValueSet/{value_set_id}/$expand"): "intake",
        ("POST", "/fhir/Questionnaire/$log-questionnaire-errors"): "intake",
        ("GET", "/fhir/Questionnaire/$log-questionnaire-errors"): "reviewer",
        ("POST", "/fhir/Claim/$submit"): "intake",
        ("POST", "/fhir/Claim/$inquire"): "intake",
    }
    for (method, path), role in roles.items():
        operation = paths[path][method.lower()]
        if path.startswith("/cds-services/"):  # CDS Hooks: the client's JWT, no API key
            assert operation["security"] == [{"CdsHooksJWT": []}]
            continue
        if role is None:  # said as OpenAPI says "no authentication", and in words
            assert operation["security"] == [] and "Needs no API key or token." in operation["description"]
            continue
        also = ["auditor"] if path == "/v1/metrics" else []  # outside the intake < reviewer order
        assert operation["security"] == [{"APIKeyHeader": [role, *also]}, {"HTTPBearer": [role, *also]}]  # either header
        assert f"with the `{role}`" in operation["description"]
        assert all(f"`{extra}` role" in operation["description"] for extra in also)
        assert {"401", "403", "429", "503"} <= set(operation["responses"])


# Distinctive values in every string and number field. (age_years is an integer of at most 130,
# which cannot be told apart from a latency or a port in a log line; its key is checked instead.)
MARKER_CASE = {
    "external_id": "MARKER-EXTERNAL-ID-7Q4",
    "policy": POLICY_ID,
    "service_date": "2026-12-01",
    "patient": {"age_years": 52, "bmi": 31.246813},
    "low_back_pain": {
        "duration_months": 26.135791,
        "mechanical": True,
        "axial_predominant": True,
        "predominant_pain_type": "nociceptive",
        "nrs": 7.086420,
        "odi_percent": 44.975319,
        "quality_of_life_severely_impaired": True,
        "eq5d_index": 0.431975,
    },
    "conservative_care": {"medication_outcome": "failed", "physical_therapy_outcome": "failed", "duration_months": 14.864209},
    "multifidus_dysfunction": {"prone_instability_test": "positive", "imaging": "atrophy_or_fatty_infiltration"},
    "surgery": {"spine_surgery_indicated": False, "prior_spine_surgery_at_or_below_t8": False},
    "device": {"able_to_operate": True, "fit_for_implant_surgery": True},
    "other_findings": {"scoliosis": False, "neurological_deficit": False, "stenosis_with_leg_pain": False, "scs_candidate": False},
    "diagnosis_codes": ["Q9Z.X7K4", "M62.85"],
}
MARKERS = [
    "MARKER-", "31.246813", "26.135791", "7.08642", "44.975319", "0.431975", "14.864209", "Q9Z.X7K4",
    "age_years", "nociceptive", "atrophy_or_fatty_infiltration", "12.345678",
]
CLIENT_LOGGERS = ("httpx", "httpcore")  # the test's own HTTP client, not the service
LOGGERS = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "service", "sqlalchemy", "sqlalchemy.engine"]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(CLIENT_LOGGERS):
            self.lines.append(self.format(record))  # the message, its arguments, and any traceback


@pytest.fixture
def debug_logs():
    """Every logger that could see a request, at DEBUG, captured; their settings restored after."""
    capture = Capture()
    saved = {name: (logger, logger.level, logger.propagate, logger.handlers[:], logger.disabled)
             for name in LOGGERS for logger in [logging.getLogger(name)]}
    yield capture
    for logger, level, propagate, handlers, disabled in saved.values():
        logger.setLevel(level)
        logger.propagate, logger.handlers, logger.disabled = propagate, handlers, disabled


@pytest.fixture
def served(tmp_path, evaluator, debug_logs):
    """The app under uvicorn, run as ``serve`` runs it, on a loopback port, in this process."""
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'coverage-criteria.db'}")
    app = create_app(settings, evaluator)
    listener = socket.create_server(("127.0.0.1", 0))
    # Logging is left to the test (uvicorn's own config would send it to stderr only).
    server = uvicorn.Server(uvicorn.Config(app, **{**uvicorn_options(), "log_config": None}, log_level="debug"))
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
        logging.getLogger(name).addHandler(debug_logs)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    yield app, f"http://127.0.0.1:{listener.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=60)
    listener.close()


def test_no_case_value_reaches_any_log_output_even_at_debug(served, debug_logs):
    app, base_url = served
    database = app.state.database
    _, reviewer = create_key(database, "reviewer")
    headers = {"X-API-Key": reviewer}

    def read_only(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA query_only=ON")

    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        created = http.post("/v1/evaluations", json=MARKER_CASE)
        statuses = [
            created.status_code,
            http.get(created.headers["location"]).status_code,
            http.get("/v1/evaluations", params={"external_id": MARKER_CASE["external_id"]}).status_code,
            http.post("/v1/evaluations", json={**MARKER_CASE, "policy": "MARKER-POLICY"}).status_code,
            http.post("/v1/evaluations", json={**MARKER_CASE, "patient": {"bmi": 12.345678, "age_years": 500}}).status_code,
            http.post("/v1/evaluations", content=b'{"external_id": "MARKER-BROKEN-JSON',
                      headers={"Content-Type": "application/json"}).status_code,
        ]
        event.listen(database.engine, "connect", read_only)
        database.engine.dispose()
        statuses.append(http.post("/v1/evaluations", json=MARKER_CASE).status_code)
        event.remove(database.engine, "connect", read_only)

    assert statuses == [201, 200, 200, 422, 422, 422, 503]
    assert any(line.startswith("service.access INFO POST /v1/evaluations 201") for line in debug_logs.lines)
    assert any("database unavailable: attempt to write a readonly database" in line for line in debug_logs.lines)
    leaks = [line for line in debug_logs.lines if any(marker in line for marker in MARKERS)]
    assert leaks == []
