"""Fixtures for the service tests: a real database (SQLite always, PostgreSQL when reachable),
the real ASGI app (with conftest's session ``evaluator``), and API keys.

PostgreSQL: a fresh database is created for the test session and dropped after it; each test
starts from an empty schema. Set COVERAGE_CRITERIA_TEST_POSTGRES_URL to use another server.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from sqlalchemy.engine import make_url

from service.app import create_app
from service.engine.evaluation import Evaluator
from service.store.keys import KeyRecord, create_key
from service.settings import Settings
from service.store.database import Database

# A caller that reads every organization, for tests that look into the store directly.
EVERY_ORGANIZATION = KeyRecord(id="0" * 16, role="reviewer", label="tests", organization="default")

POSTGRES_ADMIN_URL = os.environ.get(
    "COVERAGE_CRITERIA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database created for this test session on the local PostgreSQL, dropped afterwards."""
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        reason = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {error}"
        if os.environ.get("COVERAGE_CRITERIA_REQUIRE_POSTGRES", "") not in ("", "0"):  # set by .ci/run
            pytest.fail(f"COVERAGE_CRITERIA_REQUIRE_POSTGRES is set, so this may not be skipped: {reason}")
        pytest.skip(reason)
    name = f"coverage_criteria_test_{secrets.token_hex(4)}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty database: a new SQLite file, or the session's PostgreSQL database with a fresh schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'coverage-criteria.db'}"
    url = request.getfixturevalue("postgres_url")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url)


@pytest.fixture
def client(settings: Settings, evaluator: Evaluator, database: Database) -> Iterator[TestClient]:
    """The real app on the test database (``database`` has migrated it, and keys can be made there)."""
    with TestClient(create_app(settings, evaluator)) as test_client:
        yield test_client


@pytest.fixture
def intake_key(database: Database) -> str:
    return create_key(database, "intake", label="intake tests")[1]


@pytest.fixture
def reviewer_key(database: Database) -> str:
    return create_key(database, "reviewer", label="reviewer tests")[1]
