"""Results stored compressed: a zstd frame in ``evaluations.result_zstd`` (~3.5 kB for a ~21 kB
result); ``result_json`` keeps the text of the rows stored before, and holds "" in newer ones.

No row is rewritten (adding a nullable column is instant on both backends), so the upgrade takes
no time however many evaluations are stored; service.store.evaluations reads either kind.
(PostgreSQL's TOAST is left as it is: keeping ~4.5 kB rows inline, ``toast_tuple_target = 8160``,
cost no less of its CPU, measured, and left one row a page: 8.3 kB a row against 5.3 kB.)

Revision ID: 0010_compressed_results
Revises: 0009_audit
"""

import sqlalchemy as sa
import zstandard
from alembic import op

revision = "0010_compressed_results"
down_revision = "0009_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("evaluations", sa.Column("result_zstd", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    """The results stored compressed go back into ``result_json`` as text, then the column goes."""
    connection = op.get_bind()
    evaluations = sa.table("evaluations", sa.column("id", sa.String), sa.column("result_json", sa.Text),
                           sa.column("result_zstd", sa.LargeBinary))
    decompressor = zstandard.ZstdDecompressor()
    rows = connection.execute(sa.select(evaluations.c.id, evaluations.c.result_zstd)
                              .where(evaluations.c.result_zstd.is_not(None))).all()
    for evaluation_id, frame in rows:
        connection.execute(sa.update(evaluations).where(evaluations.c.id == evaluation_id)
                           .values(result_json=decompressor.decompress(frame).decode()))
    if connection.dialect.name == "postgresql":
        op.drop_column("evaluations", "result_zstd")
    else:  # SQLite 3.35 and later drop a column in place (alembic would copy the table)
        op.execute("ALTER TABLE evaluations DROP COLUMN result_zstd")
