"""Requests: each organization's submissions of one external_id under one policy, grouped, with
the CMS-0057-F clocks; the secret request ids are made with; evaluations name their request.
The id is a keyed hash of (organization, policy, external_id), so the primary key is the
unique constraint on that triple (store/requests.py says why there is no second one).

The evaluations already stored are grouped here: every one but CDS Hooks answers (made by the
``cds…`` client keys) joins the request of (``default`` organization, its policy, its
external_id), received when the first was stored, standard priority (no stored case could say
otherwise), open. Their stored results are left as they were returned (without ``request_id``).

Revision ID: 0006_requests
Revises: 0004_dtr
"""

import datetime
import json
import secrets

import sqlalchemy as sa
from alembic import op

from service.store.requests import make_request_id
from service.settings import due_hours_from_env

revision = "0006_requests"
down_revision = "0004_dtr"
branch_labels = None
depends_on = None

_CHUNK = 500


def upgrade() -> None:
    op.create_table(
        "request_id_secret",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_request_id_secret"),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("organization", sa.String(128), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("external_id_folded", sa.String(512), nullable=False),
        sa.Column("policy_id", sa.String(128), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("submissions", sa.Integer(), nullable=False),
        sa.Column("latest_evaluation_id", sa.String(64), nullable=False),
        sa.Column("latest_outcome", sa.String(32), nullable=True),
        sa.Column("latest_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_key_id", sa.String(32), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("priority IN ('standard', 'expedited')", name="ck_requests_priority"),
        sa.CheckConstraint("state IN ('open', 'decided')", name="ck_requests_state"),
        sa.ForeignKeyConstraint(["assigned_key_id"], ["api_keys.id"], name="fk_requests_assigned_key_id_api_keys"),
        sa.PrimaryKeyConstraint("id", name="pk_requests"),
    )
    op.create_index("ix_requests_state_due_at_id", "requests", ["state", "due_at", "id"])
    op.create_index("ix_requests_due_at_id", "requests", ["due_at", "id"])
    op.create_index("ix_requests_assigned_key_id_due_at_id", "requests", ["assigned_key_id", "due_at", "id"])
    op.create_index("ix_requests_state_priority_due_at_id", "requests", ["state", "priority", "due_at", "id"])
    op.create_index("ix_requests_state_policy_id_due_at_id", "requests", ["state", "policy_id", "due_at", "id"])
    op.create_index("ix_requests_external_id_folded", "requests", ["external_id_folded"],
                    postgresql_ops={"external_id_folded": "text_pattern_ops"})
    op.create_index("ix_requests_received_at", "requests", ["received_at"])
    if op.get_bind().dialect.name == "sqlite":  # no ALTER of constraints: the reference goes inline
        op.execute("ALTER TABLE evaluations ADD COLUMN request_id VARCHAR(36) "
                   "CONSTRAINT fk_evaluations_request_id_requests REFERENCES requests (id)")
    else:
        op.add_column("evaluations", sa.Column("request_id", sa.String(36), nullable=True))
        op.create_foreign_key("fk_evaluations_request_id_requests", "evaluations", "requests", ["request_id"], ["id"])
    op.create_index("ix_evaluations_request_id_created_at", "evaluations", ["request_id", "created_at"])
    secret = secrets.token_hex(32)
    op.get_bind().execute(sa.text("INSERT INTO request_id_secret (id, secret) VALUES (1, :secret)"), {"secret": secret})
    _group_stored_evaluations(bytes.fromhex(secret))


def _group_stored_evaluations(secret: bytes) -> None:
    connection = op.get_bind()
    evaluations = sa.table("evaluations", sa.column("id"), sa.column("external_id"), sa.column("policy_id"),
                           sa.column("key_id"), sa.column("created_at", sa.DateTime(timezone=True)),
                           sa.column("result_json"), sa.column("request_id"))
    groups: dict[tuple[str, str], dict] = {}
    members: list[dict[str, str]] = []
    stored = connection.execute(
        sa.select(evaluations.c.id, evaluations.c.external_id, evaluations.c.policy_id, evaluations.c.key_id,
                  evaluations.c.created_at).order_by(evaluations.c.created_at, evaluations.c.id))
    for row in stored:
        if row.key_id.startswith("cds") and len(row.key_id) == 32:  # a CDS Hooks client: no request
            continue
        at = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=datetime.UTC)
        group = groups.get((row.policy_id, row.external_id))
        if group is None:
            group = groups[row.policy_id, row.external_id] = {
                "id": make_request_id(secret, "default", row.policy_id, row.external_id),
                "external_id": row.external_id, "policy_id": row.policy_id, "received_at": at, "submissions": 0}
        group.update(submissions=group["submissions"] + 1, latest_evaluation_id=row.id, latest_at=at)
        members.append({"evaluation": row.id, "request": group["id"]})
    if not groups:
        return
    standard = datetime.timedelta(hours=due_hours_from_env()["due_hours_standard"])
    moment = sa.DateTime(timezone=True)
    requests = sa.table("requests", *(sa.column(name, moment if name.endswith("_at") else None) for name in (
        "id", "organization", "external_id", "external_id_folded", "policy_id", "priority", "received_at",
        "due_at", "state", "submissions", "latest_evaluation_id", "latest_outcome", "latest_at")))
    rows = list(groups.values())
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start:start + _CHUNK]
        outcomes = dict(connection.execute(
            sa.select(evaluations.c.id, evaluations.c.result_json)
            .where(evaluations.c.id.in_([g["latest_evaluation_id"] for g in chunk]))).all())
        connection.execute(sa.insert(requests), [{
            **group, "organization": "default", "external_id_folded": group["external_id"].casefold(),
            "priority": "standard", "due_at": group["received_at"] + standard, "state": "open",
            "latest_outcome": _outcome(outcomes[group["latest_evaluation_id"]]),
        } for group in chunk])
    connection.execute(
        sa.update(evaluations).where(evaluations.c.id == sa.bindparam("evaluation")).values(
            request_id=sa.bindparam("request")), members)


def _outcome(result_json: str) -> str | None:
    """A stored result's ``summary.outcome``; None for a row that holds none (hand-made, say)."""
    try:
        outcome = json.loads(result_json)["summary"]["outcome"]
    except (ValueError, TypeError, KeyError):
        return None
    return outcome if isinstance(outcome, str) else None


def downgrade() -> None:
    op.drop_index("ix_evaluations_request_id_created_at", table_name="evaluations")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE evaluations DROP COLUMN request_id")
    else:
        op.drop_constraint("fk_evaluations_request_id_requests", "evaluations", type_="foreignkey")
        op.drop_column("evaluations", "request_id")
    for index in ("received_at", "external_id_folded", "state_policy_id_due_at_id", "state_priority_due_at_id",
                  "assigned_key_id_due_at_id", "due_at_id", "state_due_at_id"):
        op.drop_index(f"ix_requests_{index}", table_name="requests")
    op.drop_table("requests")
    op.drop_table("request_id_secret")
