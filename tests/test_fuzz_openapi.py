"""Schemathesis against the service's own OpenAPI: every operation, with valid and invalid input,
without a key, with a bogus one, and with each role's key. No answer is a 5xx; every 4xx is JSON
with a ``detail`` message. ``--long`` tries many more inputs per operation."""

import json

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from service.app import create_app
from service.store.keys import create_key
from service.settings import Settings

EXAMPLES = {"default": 30, "long": 1000}


@pytest.fixture
def fuzzed_app(tmp_path, evaluator, database):
    """The app on the test database, without a rate limit (the fuzzer is one very busy key)."""
    settings = Settings(data_dir=tmp_path, database_url=str(database.url), rate_limit_per_minute=0)
    keys = {role: create_key(database, role)[1] for role in ("intake", "reviewer", "auditor")}
    app = create_app(settings, evaluator)
    with TestClient(app):  # runs the start-up (migrations) once
        yield app, {"no key": None, "bogus key": "cc_0123456789abcdef_" + "x" * 43, **keys}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_input_gets_a_5xx_and_every_4xx_is_a_json_error(fuzzed_app, request):
    app, keys = fuzzed_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    examples = EXAMPLES["long" if request.config.getoption("--long") else "default"]
    operations = [result.ok() for result in schema.get_all_operations()]
    # 9 REST (with FHIR questionnaires) + 2 notes + 3 CDS Hooks + 11 under /fhir (2 of them PAS) + 4 requests
    # + 3 determinations and metrics + 1 audit
    assert len(operations) == 33

    for operation in operations:
        cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=cases, holder=st.sampled_from(sorted(keys)))
        def answers_without_server_error(case, holder):
            headers = {name: value for name, value in (case.headers or {}).items() if name.lower() != "x-api-key"}
            if keys[holder]:
                headers["X-API-Key"] = keys[holder]
            case.headers = headers
            response = case.call()
            where = f"{operation.label} with {holder}: {case.as_curl_command()}"
            assert response.status_code < 500, f"{response.status_code} {response.text} from {where}"
            if response.status_code >= 400 and operation.path.startswith("/fhir/"):  # every error: an OperationOutcome
                assert response.headers["content-type"][0] == "application/fhir+json", where
                assert json.loads(response.content)["resourceType"] == "OperationOutcome", where
            elif response.status_code >= 400 and (case.media_type or "").endswith("fhir+json") \
                    and response.status_code in (400, 422):  # a FHIR request's errors are OperationOutcomes
                assert response.headers["content-type"][0] == "application/fhir+json", where
                assert json.loads(response.content)["resourceType"] == "OperationOutcome", where
            elif response.status_code >= 400:
                assert response.headers["content-type"][0] == "application/json", where
                assert isinstance(json.loads(response.content)["detail"], str), where

        answers_without_server_error()
