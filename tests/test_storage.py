import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from service.store.keys import create_key
from service.store.database import Database
from api_fixtures import EVERY_ORGANIZATION
from service.store.evaluations import get_evaluation_result, list_evaluation_results, save_evaluation
from service.store.tables import Base, Evaluation


def store(db, evaluation_id, external_id, key_id, result_json=None):
    save_evaluation(
        db,
        evaluation_id=evaluation_id,
        external_id=external_id,
        policy_id="isass-2023-restorative-neurostimulation",
        policy_version="1.0.0",
        key_id=key_id,
        organization="default",
        case_json=f'{{"external_id":"{external_id}"}}',
        result_json=result_json or f'{{"evaluation_id":"{evaluation_id}"}}',
    )


@pytest.fixture
def key_id(database):
    return create_key(database, "intake")[0]


def test_migrations_build_exactly_the_schema_the_models_describe(database):
    with database.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_migrating_again_changes_nothing(database, key_id):
    store(database, "e-1", "X-1", key_id)

    database.migrate()

    assert get_evaluation_result(database, EVERY_ORGANIZATION, "e-1") == '{"evaluation_id":"e-1"}'


def test_stored_result_text_comes_back_byte_for_byte(database, key_id):
    result_json = '{"external_id":"Zoë – 患者","nrs":7.0,"x":[1e-7, 2]  ,"nested":{"a":null}}'

    store(database, "e-1", "Zoë", key_id, result_json)

    assert get_evaluation_result(database, EVERY_ORGANIZATION, "e-1") == result_json


def test_unknown_ids_have_no_result(database):
    assert get_evaluation_result(database, EVERY_ORGANIZATION, "no-such-evaluation") is None
    assert get_evaluation_result(database, EVERY_ORGANIZATION, "nul\x00inside") is None


def test_results_for_an_external_id_come_newest_first(database, key_id):
    # Stored in descending id order, so only the storage time can put them newest first.
    for evaluation_id in ("e-c", "e-b", "e-a"):
        store(database, evaluation_id, "X-1", key_id)
    store(database, "other", "X-2", key_id)

    assert list_evaluation_results(database, EVERY_ORGANIZATION, "X-1").results == [
        '{"evaluation_id":"e-a"}',
        '{"evaluation_id":"e-b"}',
        '{"evaluation_id":"e-c"}',
    ]
    assert list_evaluation_results(database, EVERY_ORGANIZATION, "X-404").results == []
    assert list_evaluation_results(database, EVERY_ORGANIZATION, "X\x001").results == []


def test_a_stored_evaluation_cannot_be_overwritten(database, key_id):
    store(database, "e-1", "X-1", key_id, '{"first":true}')

    with pytest.raises(IntegrityError):
        store(database, "e-1", "X-1", key_id, '{"second":true}')

    assert get_evaluation_result(database, EVERY_ORGANIZATION, "e-1") == '{"first":true}'


def test_every_evaluation_names_a_real_key(database):
    with pytest.raises(IntegrityError):
        store(database, "e-1", "X-1", "0123456789abcdef")

    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Evaluation)) == 0


def test_sqlite_runs_in_wal_mode_with_full_sync_and_foreign_keys(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'nested' / 'folder' / 'cc.db'}")
    try:
        with db.engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        db.dispose()
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 15000}
    assert (tmp_path / "nested" / "folder" / "cc.db").exists()


def test_a_failed_transaction_leaves_nothing_behind(database, key_id):
    with pytest.raises(RuntimeError):
        with database.transaction() as session:
            session.execute(text("DELETE FROM api_keys"))
            raise RuntimeError("abort")

    with database.session() as session:
        assert session.scalar(text("SELECT count(*) FROM api_keys")) == 1


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgresql_urls_use_psycopg_3(scheme):
    db = Database(f"{scheme}://user@db.example/coverage")

    assert db.url.drivername == "postgresql+psycopg"
    assert db.engine.dialect.driver == "psycopg"
