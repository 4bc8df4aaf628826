import hashlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from service.store.keys import KeyRecord, authenticate, create_key, list_keys, revoke_key
from service.store.tables import ApiKey

KEY_FORMAT = re.compile(r"cc_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


def test_a_new_key_authenticates_with_its_role_and_label(database):
    key_id, plaintext = create_key(database, "intake", label="clinic intake")

    assert KEY_FORMAT.fullmatch(plaintext)
    assert plaintext.startswith(f"cc_{key_id}_")
    assert authenticate(database, plaintext) == KeyRecord(id=key_id, role="intake", label="clinic intake",
                                                          organization="default")


def test_only_the_hash_of_the_secret_is_stored(database):
    key_id, plaintext = create_key(database, "reviewer")
    secret = plaintext.split("_", 2)[2]

    with database.session() as session:
        row = session.get(ApiKey, key_id)
        stored = [str(value) for value in session.execute(select(ApiKey.__table__)).one()]
    assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert not any(secret in value for value in stored)


def test_list_shows_keys_without_their_hashes(database):
    first_id, _ = create_key(database, "intake", label="first")
    second_id, _ = create_key(database, "reviewer")

    keys = list_keys(database)

    assert [key["id"] for key in keys] == [first_id, second_id]
    assert [set(key) for key in keys] == [{"id", "role", "organization", "name", "label", "created_at", "revoked_at"}] * 2
    assert [(key["role"], key["label"], key["revoked_at"]) for key in keys] == [
        ("intake", "first", None),
        ("reviewer", None, None),
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", keys[0]["created_at"])


def test_a_revoked_key_no_longer_authenticates(database):
    key_id, plaintext = create_key(database, "intake")

    assert revoke_key(database, key_id) is True
    assert authenticate(database, plaintext) is None
    assert list_keys(database)[0]["revoked_at"] is not None
    assert revoke_key(database, key_id) is False


def test_revoking_an_unknown_key_reports_false(database):
    assert revoke_key(database, "0123456789abcdef") is False


def test_a_wrong_secret_for_a_real_key_id_is_rejected(database):
    key_id, plaintext = create_key(database, "intake")
    tampered = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")

    assert authenticate(database, tampered) is None


@pytest.mark.parametrize(
    "presented",
    [None, "", "cc_", "cc_0123456789abcdef_", "Bearer something", "cc_0123456789abcdef_" + "a" * 43],
)
def test_missing_malformed_and_unknown_keys_are_rejected(database, presented):
    create_key(database, "reviewer")
    assert authenticate(database, presented) is None


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(presented=st.text(max_size=80))
def test_arbitrary_strings_never_authenticate(database, presented):
    assert authenticate(database, presented) is None


def test_reviewer_keys_may_do_what_intake_keys_may_and_auditors_only_audit():
    reviewer = KeyRecord(id="0" * 16, role="reviewer", label=None, organization="default")
    intake = KeyRecord(id="1" * 16, role="intake", label=None, organization="default")
    auditor = KeyRecord(id="2" * 16, role="auditor", label=None, organization="default")

    assert reviewer.has_role("intake") and reviewer.has_role("reviewer") and not reviewer.has_role("auditor")
    assert intake.has_role("intake") and not intake.has_role("reviewer") and not intake.has_role("auditor")
    assert auditor.has_role("auditor") and not auditor.has_role("intake") and not auditor.has_role("reviewer")
    assert auditor.has_role("reviewer", "auditor") and not intake.has_role("reviewer", "auditor")


def test_unknown_roles_and_overlong_labels_are_refused(database):
    with pytest.raises(ValueError, match="role"):
        create_key(database, "admin")
    with pytest.raises(ValueError, match="label"):
        create_key(database, "intake", label="x" * 201)
    assert list_keys(database) == []
