"""The audit trail: one row per access to case data (who, their organization, what, which id,
the HTTP status, from where; never a case value).

Keyed by (at, id), the order records are appended and read in (on SQLite the table is that key,
WITHOUT ROWID), and indexed by actor: all grow at their end as records are appended
(see store/audit.py). Append-only in the database itself: triggers refuse UPDATE and DELETE on SQLite and PostgreSQL
(and TRUNCATE on PostgreSQL), whatever code or client connects.

Revision ID: 0009_audit
Revises: 0008_organizations
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_audit"
down_revision = "0008_organizations"
branch_labels = None
depends_on = None

_APPEND_ONLY_MESSAGE = "the audit trail is append-only"


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("actor_key_id", sa.String(32), nullable=True),
        sa.Column("actor_name", sa.String(200), nullable=True),
        sa.Column("actor_role", sa.String(16), nullable=True),
        sa.Column("actor_client", sa.String(512), nullable=True),
        sa.Column("organization", sa.String(128), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("resource", sa.String(16), nullable=False),
        sa.Column("resource_id", sa.String(128), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("at", "id", name="pk_audit_events"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_audit_events_actor_key_id_at", "audit_events", ["actor_key_id", "at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{action.lower()} BEFORE {action} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    op.drop_index("ix_audit_events_actor_key_id_at", table_name="audit_events")
    op.drop_table("audit_events")
