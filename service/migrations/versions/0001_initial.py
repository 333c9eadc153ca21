"""The first schema: deliveries, jobs, repository state, rejected findings, result cache.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("event", sa.String(60), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(80), index=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("repo", sa.String(200), nullable=False, index=True),
        sa.Column("installation_id", sa.Integer, nullable=False),
        sa.Column("payload", sa.JSON),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_until", sa.Float),
        sa.Column("worker", sa.String(100)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("stages", sa.JSON),
        sa.Column("result", sa.JSON),
        sa.Column("pr_url", sa.String(400)),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "repo_state",
        sa.Column("repo", sa.String(200), primary_key=True),
        sa.Column("ignored_rules", sa.JSON),
        sa.Column("pushed", sa.JSON),
        sa.Column("proposed", sa.JSON),
        sa.Column("stopped", sa.JSON),
        sa.Column("busy_until", sa.Float),
    )
    op.create_table(
        "rejected",
        sa.Column("repo", sa.String(200), primary_key=True),
        sa.Column("fingerprint", sa.String(64), primary_key=True),
    )
    op.create_table(
        "result_cache",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.JSON, nullable=False),
        sa.Column("used_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("result_cache", "rejected", "repo_state", "jobs", "deliveries"):
        op.drop_table(table)
