"""Versions record their pipeline family, what their job trained, and a LoRA erasure's adapter.

Existing rows keep null in all three: the family and the trained parameters are in each
version's manifest, which lies in the storage, out of a migration's reach; and no version
before this one had an adapter (the gateway refused `trainable: "lora"`).

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
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("family", sa.String(16)))
        batch.add_column(sa.Column("trainable", sa.String(32)))
        batch.add_column(sa.Column("adapter", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("adapter")
        batch.drop_column("trainable")
        batch.drop_column("family")
