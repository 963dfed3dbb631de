"""Studies created on Prolific through its API, and what was done to their submissions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 00:40:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "prolific_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_pk", sa.Integer(), nullable=False),
        sa.Column("internal_name", sa.String(length=100), nullable=False),
        sa.Column("prolific_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("reward_cents", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("places", sa.Integer(), nullable=False),
        sa.Column("screened_out_code", sa.String(length=64), nullable=False),
        sa.Column("exclusion_policy", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["study_pk"], ["study.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_pk"),
        sa.UniqueConstraint("internal_name"),
    )
    op.create_table(
        "prolific_action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("link_pk", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.String(length=64), nullable=False),
        sa.Column("participant_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["link_pk"], ["prolific_link.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("link_pk", "submission_id", "kind"),
    )
    op.create_index("ix_prolific_action_link_pk", "prolific_action", ["link_pk"])


def downgrade():
    op.drop_index("ix_prolific_action_link_pk", table_name="prolific_action")
    op.drop_table("prolific_action")
    op.drop_table("prolific_link")
