"""Every study stores its blocks: a single-design study's trial settings move from columns into its one block.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 03:30:00

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BLOCK_COLUMNS = (
    ("trials", sa.Integer()),
    ("practice_trials", sa.Integer()),
    ("plays", sa.Integer()),
    ("seconds", sa.Float()),
    ("slowdown", sa.Float()),
    ("sensitivity_share", sa.Float()),
    ("control_share", sa.Float()),
)


def _study_table() -> sa.Table:
    """The study table as this migration sees it: the columns it reads and writes."""
    cols = [sa.column("id", sa.Integer()), sa.column("study_type", sa.String()), sa.column("blocks", sa.JSON())]
    cols += [sa.column(n, t) for n, t in BLOCK_COLUMNS] + [sa.column("variants", sa.JSON())]
    return sa.table("study", *cols)


def upgrade():
    conn = op.get_bind()
    study = _study_table()
    for row in conn.execute(sa.select(study).where(study.c.blocks.is_(None))).mappings().all():
        block = {"study_type": row["study_type"], **{n: row[n] for n, _ in BLOCK_COLUMNS}}
        block["variants"] = list(row["variants"])
        conn.execute(sa.update(study).where(study.c.id == row["id"]).values(blocks=[block]))
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.alter_column("blocks", existing_type=sa.JSON(), nullable=False)
        for name, _ in BLOCK_COLUMNS:
            batch_op.drop_column(name)
        batch_op.drop_column("variants")


def downgrade():
    with op.batch_alter_table("study", schema=None) as batch_op:
        for name, kind in BLOCK_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
        batch_op.add_column(sa.Column("variants", sa.JSON(), nullable=True))
        batch_op.alter_column("blocks", existing_type=sa.JSON(), nullable=True)
    conn = op.get_bind()
    study = _study_table()
    for row in conn.execute(sa.select(study)).mappings().all():
        blocks = row["blocks"]
        first = blocks[0]
        indist = next((b for b in blocks if b["study_type"] == "indistinguishability"), first)
        values = {n: first[n] for n in ("plays", "seconds", "slowdown")}
        values.update(
            trials=sum(b["trials"] for b in blocks),
            practice_trials=sum(b["practice_trials"] for b in blocks),
            sensitivity_share=indist["sensitivity_share"],
            control_share=indist["control_share"],
            variants=list(dict.fromkeys(v for b in blocks for v in b["variants"])),
            blocks=blocks if row["study_type"] == "combined" else sa.null(),
        )
        conn.execute(sa.update(study).where(study.c.id == row["id"]).values(**values))
    with op.batch_alter_table("study", schema=None) as batch_op:
        for name, kind in BLOCK_COLUMNS:
            batch_op.alter_column(name, existing_type=kind, nullable=False)
        batch_op.alter_column("variants", existing_type=sa.JSON(), nullable=False)
