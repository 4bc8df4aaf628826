"""Organizations: every API key and every evaluation belongs to one; the ``auditor`` role.

Keys and evaluations stored before belong to ``default`` (the organization of keys made without
``--org``). An evaluation names its submitter's organization, which decides who may read it
(``store/tenancy.py``); lists by ``external_id`` filter it on the few rows of a reference (no
index of its own: every stored evaluation would pay an insert more). Keys gain a
``name`` (a reviewer's, as notes and printouts show it). The role check admits ``auditor``: on
SQLite a check constraint changes only by rebuilding the table (batch mode; foreign keys are off
during migrations, see ``store.database.migration_connection``).

Revision ID: 0008_organizations
Revises: 0007_determinations
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_organizations"
down_revision = "0007_determinations"
branch_labels = None
depends_on = None

_DEFAULT = sa.text("'default'")


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("organization", sa.String(128), server_default=_DEFAULT, nullable=False))
        batch.add_column(sa.Column("name", sa.String(200), nullable=True))
        batch.drop_constraint("ck_api_keys_role", type_="check")
        batch.create_check_constraint("ck_api_keys_role", "role IN ('intake', 'reviewer', 'auditor')")
    op.add_column("evaluations",
                  sa.Column("organization", sa.String(128), server_default=_DEFAULT, nullable=False))


def downgrade() -> None:
    # Auditor keys cannot exist before this revision; they go with it (they never wrote anything).
    op.execute("DELETE FROM api_keys WHERE role = 'auditor'")
    # SQLite drops the column in place (no rebuild, which would rewrite the table's other
    # constraints in a form 0006's own downgrade cannot drop request_id from).
    op.drop_column("evaluations", "organization")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("ck_api_keys_role", type_="check")
        batch.create_check_constraint("ck_api_keys_role", "role IN ('intake', 'reviewer')")
        batch.drop_column("name")
        batch.drop_column("organization")
