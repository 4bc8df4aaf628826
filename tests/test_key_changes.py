"""Keys kept in memory on SQLite until a key changes (service.store.key_changes): a revocation
made anywhere on the host, the command line's included, is refused on the very next request; a
kept row also expires on its own; made-up key ids keep nothing. PostgreSQL keeps nothing."""

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import update

from service.store import key_changes
from service.store.keys import authenticate, create_key
from service.store.tables import ApiKey, utc_now

COMMAND = Path(sys.executable).parent / "coverage-criteria"


def auth(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def test_a_key_revoked_at_the_command_line_is_refused_on_the_next_request(client, database, database_url,
                                                                            full_case, tmp_path, monkeypatch):
    monkeypatch.setattr(key_changes.time, "monotonic", lambda: 1000.0)  # nothing expires meanwhile
    key_id, key = create_key(database, "intake")
    assert client.post("/v1/evaluations", json=full_case, headers=auth(key)).status_code == 201
    assert client.post("/v1/evaluations", json=full_case, headers=auth(key)).status_code == 201  # kept, on SQLite
    env = {**os.environ, "COVERAGE_CRITERIA_DATABASE_URL": database_url, "COVERAGE_CRITERIA_DATA_DIR": str(tmp_path)}
    revoked = subprocess.run([COMMAND, "keys", "revoke", key_id], env=env, capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0, revoked.stderr
    assert client.post("/v1/evaluations", json=full_case, headers=auth(key)).status_code == 401


def test_sqlite_keeps_what_it_read_until_a_key_changes_or_it_expires(database, monkeypatch):
    if database.key_changes is None:  # PostgreSQL: every request reads its key
        assert database.url.get_backend_name() == "postgresql"
        return
    key_id, key = create_key(database, "reviewer")
    clock = [1000.0]
    monkeypatch.setattr(key_changes.time, "monotonic", lambda: clock[0])
    assert authenticate(database, key).role == "reviewer"
    with database.engine.begin() as connection:  # changed by hand, without telling anyone
        connection.execute(update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utc_now()))
    assert authenticate(database, key) is not None  # still the row read a moment ago
    clock[0] += key_changes.KEPT_SECONDS
    assert authenticate(database, key) is None  # read again once expired


def test_a_wrong_secret_for_a_kept_key_is_refused_and_made_up_ids_keep_nothing(database):
    key_id, key = create_key(database, "intake")
    assert authenticate(database, key) is not None
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert authenticate(database, wrong) is None
    made_up = [f"cc_{index:016x}_{'A' * 43}" for index in range(200)]
    assert all(authenticate(database, presented) is None for presented in made_up)
    if database.key_changes is not None:
        assert set(database.key_changes._kept) == {key_id}


def test_the_counter_file_is_private(database):
    if database.key_changes is None:
        return
    path = Path(str(database)).with_name(Path(str(database)).name + "-keys")
    assert path.exists() and path.stat().st_mode & 0o077 == 0
