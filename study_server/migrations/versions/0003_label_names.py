"""Display names of a batch's class labels (what participants read in Deceitfulness trials).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 17:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.add_column(sa.Column('label_names', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('batch', schema=None) as batch_op:
        batch_op.drop_column('label_names')
