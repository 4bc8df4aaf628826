"""Results are stored compressed (zstd) and read back byte for byte, whether stored before
migration 0008 (as text) or after; downgrading puts them back as text."""

import json

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from service.engine.evaluation import Evaluator
from service.store.database import MIGRATIONS_DIR, Database, hold_migration_lock
from service.store.evaluations import get_evaluation_result, list_evaluation_results, save_evaluation
from service.store.idempotency import IdempotencyClaim
from service.store.keys import KeyRecord, create_key

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# An intake caller of the organization the rows below belong to (its own rows only), and a reviewer.
OWN = KeyRecord("k", "intake", None, "default")
OTHER = KeyRecord("k", "intake", None, "elsewhere")
REVIEWER = KeyRecord("r", "reviewer", None, "elsewhere")


def config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


BEFORE = ScriptDirectory.from_config(config()).get_revision("0010_compressed_results").down_revision


def migrate(db: Database, revision: str, down: bool = False) -> None:
    config_ = config()
    with db.engine.begin() as connection:
        hold_migration_lock(connection)
        config_.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config_, revision)


def a_result(evaluator: Evaluator, full_case: dict) -> tuple[str, str]:
    evaluated = evaluator.evaluate_json({**full_case, "external_id": "Zoë – 患者"})
    return evaluated.evaluation_id, evaluated.json.decode()


def columns(db: Database, evaluation_id: str) -> dict:
    with db.engine.connect() as connection:
        return dict(connection.execute(text("SELECT * FROM evaluations WHERE id = :id"), {"id": evaluation_id})
                    .mappings().one())


def stored_columns(evaluation_id: str, result_json: str, key_id: str) -> dict:
    return {"evaluation_id": evaluation_id, "external_id": "Zoë – 患者", "key_id": key_id,
            "policy_id": "isass-2023-restorative-neurostimulation", "policy_version": "1.0.0",
            "organization": "default", "case_json": '{"external_id":"Zoë – 患者"}', "result_json": result_json}


def test_a_result_is_stored_as_a_zstd_frame_a_sixth_of_its_size(database, evaluator, full_case):
    key_id = create_key(database, "intake")[0]
    evaluation_id, result_json = a_result(evaluator, full_case)

    save_evaluation(database, **stored_columns(evaluation_id, result_json, key_id))

    row = columns(database, evaluation_id)
    assert bytes(row["result_zstd"]).startswith(ZSTD_MAGIC)
    assert len(row["result_zstd"]) < len(result_json.encode()) / 4
    assert row["result_json"] == ""
    assert get_evaluation_result(database, OWN, evaluation_id) == result_json
    assert get_evaluation_result(database, REVIEWER, evaluation_id) == result_json
    assert get_evaluation_result(database, OTHER, evaluation_id) is None  # another organization's
    assert list_evaluation_results(database, OWN, "Zoë – 患者").results == [result_json]


def test_rows_stored_before_0008_are_read_as_they_were_stored(database_url, evaluator, full_case):
    db = Database(database_url)
    try:
        migrate(db, BEFORE)
        key_id = create_key(db, "intake")[0]
        old_id, old_json = a_result(evaluator, full_case)
        with db.engine.begin() as connection:  # as the service stored a result then
            connection.execute(text(
                "INSERT INTO evaluations (id, external_id, policy_id, policy_version, key_id, case_json, "
                "result_json, created_at) VALUES (:id, 'Zoë – 患者', 'p', '1', :key, '{}', :result, :at)"),
                {"id": old_id, "key": key_id, "result": old_json, "at": "2026-11-30 10:00:00+00:00"})
            connection.execute(text(
                "INSERT INTO idempotency_keys (key_id, idempotency_key, request_sha256, evaluation_id, created_at) "
                "VALUES (:key, 'retry-1', :sha, :id, :at)"),
                {"key": key_id, "sha": IdempotencyClaim.from_header("retry-1", key_id, b"{}").request_sha256,
                 "id": old_id, "at": "2099-01-01 00:00:00+00:00"})
        db.migrate()
        new_id, new_json = a_result(evaluator, full_case)
        save_evaluation(db, **stored_columns(new_id, new_json, key_id))

        assert get_evaluation_result(db, OWN, old_id) == old_json
        assert list_evaluation_results(db, OWN, "Zoë – 患者").results == [new_json, old_json]
        previous = IdempotencyClaim.from_header("retry-1", key_id, b"{}").previous(db)
        assert (previous.evaluation_id, previous.result_json, previous.same_body) == (old_id, old_json, True)
    finally:
        db.dispose()


def test_downgrading_puts_compressed_results_back_as_text(database, evaluator, full_case):
    key_id = create_key(database, "intake")[0]
    evaluation_id, result_json = a_result(evaluator, full_case)
    save_evaluation(database, **stored_columns(evaluation_id, result_json, key_id))

    migrate(database, BEFORE, down=True)

    row = columns(database, evaluation_id)
    assert "result_zstd" not in row and row["result_json"] == result_json
    assert json.loads(row["result_json"])["external_id"] == "Zoë – 患者"
    with database.engine.connect() as connection:
        assert "result_zstd" not in {c["name"] for c in inspect(connection).get_columns("evaluations")}
    database.migrate()
    assert get_evaluation_result(database, OWN, evaluation_id) == result_json
