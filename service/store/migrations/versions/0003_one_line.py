"""One line of history: the three revisions written side by side off 0001 (CDS Hooks, hardening,
the review page) join here, so ``alembic upgrade head`` needs no "heads" and the next migration
has one parent. A new migration: ``alembic revision -m "what it does"`` from the checkout (its
``down_revision`` is then the current head), named ``NNNN_<area>.py``; see docs/operations.md.

Revision ID: 0003_one_line
Revises: 0002_cds, 0002_hardening, 0002_review
"""

revision = "0003_one_line"
down_revision = ("0002_cds", "0002_hardening", "0002_review")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
