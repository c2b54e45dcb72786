"""A job's audit level and its estimated duration.

Existing jobs get null for both: the library's default audit level (quick), and no estimate.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("audit", sa.String(8)))
        batch.add_column(sa.Column("estimated_seconds", sa.Float()))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("estimated_seconds")
        batch.drop_column("audit")
