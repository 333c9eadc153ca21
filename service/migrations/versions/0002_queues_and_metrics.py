"""Jobs name the queue they wait on (CPU and CUDA workers consume their own), and the metrics
table that every worker process adds its counters to (read back by ``/metrics``).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("queue", sa.String(100), nullable=False, server_default="codemod-jobs"))
        batch.create_index("ix_jobs_queue", ["queue"])
    op.create_table(
        "metrics",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("labels", sa.String(400), primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("metrics")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_queue")
        batch.drop_column("queue")
