"""Graded (threshold) trials: the method and strength shown, and the adaptive procedure's state.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 20:10:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("trial") as t:
        t.add_column(sa.Column("method", sa.String(length=32), nullable=True))
        t.add_column(sa.Column("strength", sa.Float(), nullable=True))
        t.add_column(sa.Column("adaptive", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("trial") as t:
        t.drop_column("adaptive")
        t.drop_column("strength")
        t.drop_column("method")
