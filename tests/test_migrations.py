"""Issue 16, finding 11: a plain ``alembic upgrade head`` works, from a fresh database and from
every earlier revision (and from the three heads that deployments held before they were joined),
on SQLite and PostgreSQL, and keeps what was stored.

Each start is made by ``alembic upgrade <revision>`` through the checkout's alembic.ini and
env.py, as an operator would; the fresh database also by the ``alembic`` command itself.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from api_fixtures import EVERY_ORGANIZATION
from servers import ROOT
from service.store.database import Database
from service.store.evaluations import get_evaluation_result
from service.store.tables import Base

ALEMBIC_INI = ROOT / "alembic.ini"
SCRIPTS = ScriptDirectory.from_config(Config(str(ALEMBIC_INI)))
REVISIONS = [script.revision for script in reversed(list(SCRIPTS.walk_revisions()))]
# What a deployment held before 0003_one_line joined the three lines written side by side.
THREE_HEADS = ("0002_cds", "0002_hardening", "0002_review")
STARTS = [("fresh",), *[(revision,) for revision in REVISIONS], THREE_HEADS]


@pytest.fixture
def alembic_config(database_url, tmp_path, monkeypatch) -> Config:
    """The checkout's alembic.ini, pointed at the test database as an operator would point it."""
    monkeypatch.setenv("COVERAGE_CRITERIA_DATABASE_URL", database_url)
    monkeypatch.setenv("COVERAGE_CRITERIA_DATA_DIR", str(tmp_path))
    return Config(str(ALEMBIC_INI))


def current(url: str) -> set[str]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            return set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def test_finding_11_the_history_is_one_line_with_one_head():
    assert SCRIPTS.get_heads() == [REVISIONS[-1]]
    assert REVISIONS[0] == "0001"


@pytest.mark.parametrize("start", STARTS, ids=["+".join(s) for s in STARTS])
def test_finding_11_upgrade_head_works_from_every_earlier_revision_and_keeps_the_data(
        alembic_config, database_url, start):
    if start != ("fresh",):  # data stored at 0001 rides through every revision after it
        command.upgrade(alembic_config, "0001")
        _store_at_0001_shape(database_url)
        for revision in start:
            command.upgrade(alembic_config, revision)
        assert current(database_url) == set(start)

    command.upgrade(alembic_config, "head")

    assert current(database_url) == {REVISIONS[-1]}
    database = Database(database_url)
    try:
        with database.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        if start != ("fresh",):
            assert get_evaluation_result(database, EVERY_ORGANIZATION, "e-before") == '{"evaluation_id":"e-before"}'
        database.migrate()  # the service's start-up after the operator's upgrade: nothing to do
    finally:
        database.dispose()
    assert current(database_url) == {REVISIONS[-1]}


def test_finding_11_the_alembic_command_upgrades_a_fresh_database_from_the_checkout(database_url, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_CRITERIA_")},
           "COVERAGE_CRITERIA_DATABASE_URL": database_url, "COVERAGE_CRITERIA_DATA_DIR": str(tmp_path)}
    alembic = [sys.executable, "-m", "alembic"]

    upgrade = subprocess.run([*alembic, "upgrade", "head"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
    heads = subprocess.run([*alembic, "heads"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    check = subprocess.run([*alembic, "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert upgrade.returncode == 0, upgrade.stderr
    assert check.returncode == 0 and "No new upgrade operations detected" in check.stdout + check.stderr, check
    assert "multiple heads" not in upgrade.stderr.lower()
    assert heads.stdout.split() == [REVISIONS[-1], "(head)"]
    assert current(database_url) == {REVISIONS[-1]}


def _store_at_0001_shape(url: str) -> None:
    """A key and an evaluation, written with 0001's columns only (every later revision keeps them)."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    now = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
    try:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO api_keys (id, role, label, secret_sha256, created_at) "
                                    "VALUES ('k-before', 'intake', NULL, :secret, :now)"),
                               {"secret": "0" * 64, "now": now})
            connection.execute(text("INSERT INTO evaluations (id, external_id, policy_id, policy_version, key_id, "
                                    "case_json, result_json, created_at) VALUES ('e-before', 'X-1', "
                                    "'isass-2023-restorative-neurostimulation', '1.0.0', 'k-before', '{}', "
                                    ":result, :now)"), {"result": '{"evaluation_id":"e-before"}', "now": now})
    finally:
        engine.dispose()
