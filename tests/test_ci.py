"""Issue 16, finding 13: a CI whose PostgreSQL is gone, or which lacks the shared FHIR examples
beside the clone, goes red instead of green with hundreds of tests skipped; and the README says
why tests skip in a plain clone."""

from __future__ import annotations

import os
import subprocess
import sys

from servers import ROOT

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/test"
ONE_POSTGRES_TEST = "tests/test_storage.py::test_unknown_ids_have_no_result[postgresql]"


def pytest_run(*args: str, env_extra: dict[str, str], cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_CRITERIA_")}, **env_extra}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def test_finding_13_without_postgresql_its_tests_skip_in_a_plain_clone():
    run = pytest_run(ONE_POSTGRES_TEST, env_extra={"COVERAGE_CRITERIA_TEST_POSTGRES_URL": UNREACHABLE})

    assert run.returncode == 0, run.stdout
    assert "1 skipped" in run.stdout and "PostgreSQL is not reachable" in run.stdout


def test_finding_13_without_postgresql_ci_fails_instead_of_skipping():
    run = pytest_run(ONE_POSTGRES_TEST, env_extra={"COVERAGE_CRITERIA_TEST_POSTGRES_URL": UNREACHABLE,
                                                   "COVERAGE_CRITERIA_REQUIRE_POSTGRES": "1"})

    assert run.returncode == 1, run.stdout
    assert "skipped" not in run.stdout.splitlines()[-1]
    assert "COVERAGE_CRITERIA_REQUIRE_POSTGRES is set, so this may not be skipped" in run.stdout


def test_finding_13_a_test_of_the_shared_examples_fails_instead_of_skipping_when_ci_has_them(tmp_path):
    (tmp_path / "test_reads_shared.py").write_text(
        "import pytest\n\n"
        "def test_reads_an_example():\n"
        "    pytest.skip('../shared/fhir-examples/x.json is absent (shared/fhir-examples is not beside the checkout)')\n"
        "\n"
        "def test_skips_for_another_reason():\n"
        "    pytest.skip('long variant: run with --long')\n")
    plugin = ["-p", "required_resources", "--rootdir", str(tmp_path), str(tmp_path)]
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}

    plain = pytest_run(*plugin, env_extra=env, cwd=tmp_path)
    required = pytest_run(*plugin, env_extra={**env, "COVERAGE_CRITERIA_REQUIRE_SHARED": "1"}, cwd=tmp_path)

    assert plain.returncode == 0 and "2 skipped" in plain.stdout
    assert required.returncode == 1 and "1 failed, 1 skipped" in required.stdout


def test_finding_13_ci_starts_postgresql_and_requires_what_it_has():
    script = (ROOT / ".ci" / "run").read_text()

    assert subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")]).returncode == 0
    assert 'pg_ctlcluster --skip-systemctl-redirect "$version" main start' in script
    assert "createdb -h 127.0.0.1 -U postgres test" in script
    assert "export COVERAGE_CRITERIA_REQUIRE_POSTGRES=1" in script
    assert "export COVERAGE_CRITERIA_REQUIRE_SHARED=1" in script
    assert script.index("REQUIRE_POSTGRES") < script.index(".venv/bin/pytest")


def test_finding_13_the_readme_says_why_tests_skip_in_a_plain_clone():
    readme = (ROOT / "README.md").read_text()

    for said in ("../shared/fhir-examples", "a database named `test`", "without a password", "chromium",
                 "COVERAGE_CRITERIA_REQUIRE_POSTGRES", "COVERAGE_CRITERIA_REQUIRE_SHARED"):
        assert said in readme, said
