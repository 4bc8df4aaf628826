"""DTR: the errors DTR clients log against questionnaires ($log-questionnaire-errors).

Revision ID: 0004_dtr
Revises: 0003_one_line
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_dtr"
down_revision = "0003_one_line"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dtr_questionnaire_errors",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("version", sa.String(200), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("outcome_json", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dtr_questionnaire_errors"),
    )
    op.create_index("ix_dtr_questionnaire_errors_url_version_received_at",
                    "dtr_questionnaire_errors", ["url", "version", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_dtr_questionnaire_errors_url_version_received_at",
                  table_name="dtr_questionnaire_errors")
    op.drop_table("dtr_questionnaire_errors")
