"""Per-study texts participants read (the page header, the information and consent text); pilot participants.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 21:00:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(sa.Column("header", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("consent_text", sa.Text(), nullable=True))
    with op.batch_alter_table("participant", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pilot", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table("participant", schema=None) as batch_op:
        batch_op.drop_column("pilot")
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_column("consent_text")
        batch_op.drop_column("header")
