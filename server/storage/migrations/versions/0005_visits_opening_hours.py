"""Door visits derived from taps, and each site's opening hours.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "visits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("entry_agent", sa.String(length=64), nullable=False),
        sa.Column("entry_seq", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visits")),
        sa.UniqueConstraint(
            "site", "entry_agent", "entry_seq", name=op.f("uq_visits_site_entry_agent_entry_seq")
        ),
    )
    op.create_index("ix_visits_site_start", "visits", ["site", "start"])
    op.create_index("ix_visits_member_start", "visits", ["member_id", "start"])
    # A plain nullable column: SQLite adds it in place, no table rebuild.
    op.add_column("sites", sa.Column("opening_hours", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("opening_hours")
    op.drop_index("ix_visits_member_start", table_name="visits")
    op.drop_index("ix_visits_site_start", table_name="visits")
    op.drop_table("visits")
