"""Booking limits per site and plan: how far ahead, how long, how many at once.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "booking_limits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=True),
        sa.Column("days_ahead", sa.Integer(), nullable=True),
        sa.Column("max_minutes", sa.Integer(), nullable=True),
        sa.Column("at_once", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "(days_ahead IS NULL OR days_ahead >= 0) AND (max_minutes IS NULL OR max_minutes > 0)"
            " AND (at_once IS NULL OR at_once > 0)",
            name=op.f("ck_booking_limits_positive"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            ondelete="CASCADE",
            name=op.f("fk_booking_limits_site_id_sites"),
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["plans.id"],
            ondelete="CASCADE",
            name=op.f("fk_booking_limits_plan_id_plans"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_booking_limits")),
        sa.UniqueConstraint("site_id", "plan_id", name=op.f("uq_booking_limits_site_id_plan_id")),
    )


def downgrade() -> None:
    op.drop_table("booking_limits")
