"""The content-creating requests made to GitHub in the last minute, per installation: the write
budget (GitHub allows 80 a minute) is shared by every worker process.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "github_writes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("installation", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_github_writes_installation", "github_writes", ["installation"])
    op.create_index("ix_github_writes_at", "github_writes", ["at"])


def downgrade() -> None:
    op.drop_table("github_writes")
