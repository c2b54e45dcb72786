"""Models belong to a tenant: owner and visibility; names per tenant; versions numbered per tenant.

Existing models become `public` with no owner, so that every tenant keeps seeing the bases it
saw. Existing versions keep their numbers (job results, manifests and clients refer to them);
the next version a tenant's job makes follows the newest that tenant sees.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# SQLite keeps no names for the unnamed unique constraints of 0001: a batch (which copies the
# table) names what it reflects by this convention, so that they can be dropped by name.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}
IS_PUBLIC = sa.text("visibility = 'public'")


def upgrade() -> None:
    with op.batch_alter_table("models", naming_convention=NAMING) as batch:
        batch.add_column(sa.Column("owner", sa.String(64)))
        batch.add_column(sa.Column("visibility", sa.String(16), nullable=False, server_default="public"))
        batch.drop_constraint(_unique_constraint("models", ["name"]), type_="unique")
        batch.create_unique_constraint("uq_models_owner_name", ["owner", "name"])
        batch.create_index("ix_models_name", ["name"])
    with op.batch_alter_table("models") as batch:
        batch.alter_column("visibility", server_default=None)  # the rows that existed are public; new ones say
    op.create_index("uq_models_public_name", "models", ["name"], unique=True,
                    sqlite_where=IS_PUBLIC, postgresql_where=IS_PUBLIC)  # fmt: skip
    with op.batch_alter_table("model_versions", naming_convention=NAMING) as batch:
        batch.drop_constraint(_unique_constraint("model_versions", ["model_id", "version"]), type_="unique")
        batch.create_unique_constraint("uq_model_versions_line", ["model_id", "tenant", "version"])


def downgrade() -> None:
    """Back to one namespace and one numbering: fails if two models share a name or two
    tenants' versions share a number (the unique constraints of 0001 refuse them)."""
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_constraint("uq_model_versions_line", type_="unique")
        batch.create_unique_constraint("uq_model_versions_model_id_version", ["model_id", "version"])
    op.drop_index("uq_models_public_name", table_name="models")
    with op.batch_alter_table("models") as batch:
        batch.drop_index("ix_models_name")
        batch.drop_constraint("uq_models_owner_name", type_="unique")
        batch.drop_column("visibility")
        batch.drop_column("owner")
        batch.create_unique_constraint("uq_models_name", ["name"])


def _unique_constraint(table: str, columns: list[str]) -> str:
    """The name of `table`'s unique constraint on `columns`: PostgreSQL's own, or the convention's."""
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints(table):
        if constraint["column_names"] == columns and constraint["name"]:
            return constraint["name"]
    return NAMING["uq"] % {"table_name": table, "column_0_N_name": "_".join(columns)}
