"""The review page: reviewers' sign-in sessions, and their append-only notes on evaluations.

A session is stored as the SHA-256 of its token (the cookie holds the token), so a copy of the
database signs no one in. Notes can be added, never changed or removed: triggers refuse UPDATE
and DELETE on both SQLite and PostgreSQL.

Revision ID: 0002_review
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_review"
down_revision = "0001"
branch_labels = None
depends_on = None

_APPEND_ONLY_MESSAGE = "review notes are append-only"


def upgrade() -> None:
    op.create_table(
        "review_sessions",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name="fk_review_sessions_key_id_api_keys"),
        sa.PrimaryKeyConstraint("token_sha256", name="pk_review_sessions"),
    )
    op.create_index("ix_review_sessions_expires_at", "review_sessions", ["expires_at"])
    op.create_table(
        "review_notes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("evaluation_id", sa.String(64), nullable=False),
        sa.Column("criterion", sa.String(64), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["evaluation_id"], ["evaluations.id"], name="fk_review_notes_evaluation_id_evaluations"
        ),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name="fk_review_notes_key_id_api_keys"),
        sa.PrimaryKeyConstraint("id", name="pk_review_notes"),
    )
    op.create_index("ix_review_notes_evaluation_id_id", "review_notes", ["evaluation_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION review_notes_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY_MESSAGE}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER review_notes_append_only BEFORE UPDATE OR DELETE ON review_notes "
            "FOR EACH ROW EXECUTE FUNCTION review_notes_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER review_notes_no_{action.lower()} BEFORE {action} ON review_notes "
                f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY_MESSAGE}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER review_notes_append_only ON review_notes")
        op.execute("DROP FUNCTION review_notes_append_only()")
    op.drop_index("ix_review_notes_evaluation_id_id", table_name="review_notes")
    op.drop_table("review_notes")
    op.drop_index("ix_review_sessions_expires_at", table_name="review_sessions")
    op.drop_table("review_sessions")
