"""Reviewers' determinations on requests: append-only in the database itself. Triggers refuse
UPDATE and DELETE on SQLite and PostgreSQL; a correction is a new row that ``amends`` one.

Revision ID: 0007_determinations
Revises: 0006_requests
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_determinations"
down_revision = "0006_requests"
branch_labels = None
depends_on = None

_APPEND_ONLY_MESSAGE = "determinations are append-only"


def upgrade() -> None:
    op.create_table(
        "determinations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("evaluation_id", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("criteria_json", sa.Text(), nullable=False),
        sa.Column("attestation", sa.Boolean(), nullable=False),
        sa.Column("amends", sa.String(36), nullable=True),
        sa.Column("reviewer_key_id", sa.String(32), nullable=False),
        sa.Column("reviewer_name", sa.String(200), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('approved', 'denied', 'partially_approved', 'pended_for_information', "
            "'referred_to_physician_reviewer')",
            name="ck_determinations_outcome",
        ),
        sa.CheckConstraint("attestation", name="ck_determinations_attested"),
        sa.ForeignKeyConstraint(["request_id"], ["requests.id"], name="fk_determinations_request_id_requests"),
        sa.ForeignKeyConstraint(["evaluation_id"], ["evaluations.id"],
                                name="fk_determinations_evaluation_id_evaluations"),
        sa.ForeignKeyConstraint(["amends"], ["determinations.id"], name="fk_determinations_amends_determinations"),
        sa.ForeignKeyConstraint(["reviewer_key_id"], ["api_keys.id"],
                                name="fk_determinations_reviewer_key_id_api_keys"),
        sa.PrimaryKeyConstraint("id", name="pk_determinations"),
    )
    op.create_index("ix_determinations_request_id_recorded_at_id", "determinations",
                    ["request_id", "recorded_at", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION determinations_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER determinations_append_only BEFORE UPDATE OR DELETE ON determinations "
            "FOR EACH ROW EXECUTE FUNCTION determinations_append_only()"
        )
        # TRUNCATE skips row triggers: refuse it too.
        op.execute(
            "CREATE TRIGGER determinations_no_truncate BEFORE TRUNCATE ON determinations "
            "FOR EACH STATEMENT EXECUTE FUNCTION determinations_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER determinations_no_{action.lower()} BEFORE {action} ON determinations "
                f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER determinations_no_truncate ON determinations")
        op.execute("DROP TRIGGER determinations_append_only ON determinations")
        op.execute("DROP FUNCTION determinations_append_only()")
    op.drop_index("ix_determinations_request_id_recorded_at_id", table_name="determinations")
    op.drop_table("determinations")
