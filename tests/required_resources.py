"""What a test run may not do without: a pytest plugin (loaded by conftest.py) that turns the
skip of a test needing PostgreSQL, or the shared FHIR examples, into a failure when the run says
it has them. ``.ci/run`` sets both, so a CI whose PostgreSQL is gone goes red instead of green with
hundreds of tests skipped.

- ``COVERAGE_CRITERIA_REQUIRE_POSTGRES=1``: a test skipped because PostgreSQL is unreachable fails.
- ``COVERAGE_CRITERIA_REQUIRE_SHARED=1``: a test skipped because a file of ``../shared``
  (fhir-examples, crd-test-material) is absent fails.

A skip is recognized by its reason, which every such skip states (``PostgreSQL is not reachable``,
``… is absent (shared/fhir-examples …)``), whoever wrote the test.
"""

from __future__ import annotations

import os
import re

import pytest

REQUIRED = {
    "COVERAGE_CRITERIA_REQUIRE_POSTGRES": re.compile(r"PostgreSQL is not reachable"),
    "COVERAGE_CRITERIA_REQUIRE_SHARED": re.compile(r"shared/|fhir-examples|crd-test-material"),
}


def required_patterns(environ=os.environ) -> list[tuple[str, re.Pattern[str]]]:
    return [(name, pattern) for name, pattern in REQUIRED.items() if environ.get(name, "") not in ("", "0")]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return
    reason = str(report.longrepr[2])
    for name, pattern in required_patterns():
        if pattern.search(reason):
            report.outcome = "failed"
            report.longrepr = f"{name} is set, so this may not be skipped: {reason}"
            return
