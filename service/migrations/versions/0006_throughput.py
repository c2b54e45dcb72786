"""The throughput each succeeded job measured, per stage, from which new jobs are estimated.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "throughput",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("worker_kind", sa.String(128), nullable=False),
        sa.Column("base_model", sa.String(64), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("unet_parameters", sa.BigInteger()),
        sa.Column("seconds", sa.JSON(), nullable=False),
        sa.Column("units", sa.JSON(), nullable=False),
    )
    op.create_index("ix_throughput_created_at", "throughput", ["created_at"])
    op.create_index("ix_throughput_base", "throughput", ["base_model", "base_version", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_throughput_base", "throughput")
    op.drop_index("ix_throughput_created_at", "throughput")
    op.drop_table("throughput")
