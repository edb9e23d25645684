"""How each door and desk is wired to its agent's Pi, for the agents' remote config.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("doors") as batch:
        batch.add_column(sa.Column("wiring", sa.JSON(), nullable=True))
    with op.batch_alter_table("desks") as batch:
        batch.add_column(sa.Column("wiring", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("desks") as batch:
        batch.drop_column("wiring")
    with op.batch_alter_table("doors") as batch:
        batch.drop_column("wiring")
