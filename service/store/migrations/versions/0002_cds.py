"""CDS Hooks: token ids seen (replay protection across workers) and clients' feedback.

Revision ID: 0002_cds
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_cds"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cds_token_ids",
        sa.Column("id_sha256", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_sha256", name="pk_cds_token_ids"),
    )
    op.create_index("ix_cds_token_ids_expires_at", "cds_token_ids", ["expires_at"])
    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("service_id", sa.String(200), nullable=False),
        sa.Column("client", sa.String(32), nullable=False),
        sa.Column("card", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_timestamp", sa.String(64), nullable=False),
        sa.Column("feedback_json", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cds_feedback"),
    )
    op.create_index("ix_cds_feedback_service_id_received_at", "cds_feedback", ["service_id", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_cds_feedback_service_id_received_at", table_name="cds_feedback")
    op.drop_table("cds_feedback")
    op.drop_index("ix_cds_token_ids_expires_at", table_name="cds_token_ids")
    op.drop_table("cds_token_ids")
