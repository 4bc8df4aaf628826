"""Rate-limit buckets every server sharing a PostgreSQL database counts in (service/store/ratelimits.py).

UNLOGGED on PostgreSQL: a bucket is no record worth a disk flush (a take then commits without
waiting for one), and after a crash the buckets start full. SQLite keeps its buckets in the
process; the table is there, empty, so that both schemas are one.

Revision ID: 0011_shared_limits
Revises: 0010_compressed_results
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_shared_limits"
down_revision = "0010_compressed_results"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "rate_buckets",
        sa.Column("bucket", sa.String(300), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("counted_at", sa.Float(), nullable=False),
        sa.Column("full_at", sa.Float(), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", name="pk_rate_buckets"),
        prefixes=["UNLOGGED"] if postgresql else [],
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
