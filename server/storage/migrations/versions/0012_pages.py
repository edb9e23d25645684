"""What the pages record: badge enrolments by tap, guest invitations, desk check-ins,
alarm acknowledgements; and `alarm_ack` rows in the audit log.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS = ("decision", "remote_unlock", "alarm", "lockdown")


def _audit_kind(*kinds: str) -> sa.Enum:
    return sa.Enum(*kinds, name="audit_kind", native_enum=False, create_constraint=True,
                   length=16)  # fmt: skip


def _instant(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "badge_enrolments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("door_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        _instant("requested_at"),
        _instant("expires_at"),
        sa.Column("badge_id", sa.Integer(), nullable=True),
        _instant("done_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["door_id"],
            ["doors.id"],
            ondelete="CASCADE",
            name=op.f("fk_badge_enrolments_door_id_doors"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            ondelete="CASCADE",
            name=op.f("fk_badge_enrolments_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["badge_id"],
            ["badges.id"],
            ondelete="SET NULL",
            name=op.f("fk_badge_enrolments_badge_id_badges"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_badge_enrolments")),
    )
    op.create_index(op.f("ix_badge_enrolments_door_id_expires_at"), "badge_enrolments",
                    ["door_id", "expires_at"])  # fmt: skip
    op.create_table(
        "guest_invitations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("guest_member_id", sa.Integer(), nullable=False),
        sa.Column("host_member_id", sa.Integer(), nullable=True),
        sa.Column("invited_by", sa.String(length=100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        _instant("valid_until"),
        _instant("created_at"),
        _instant("cancelled_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            ondelete="RESTRICT",
            name=op.f("fk_guest_invitations_site_id_sites"),
        ),
        sa.ForeignKeyConstraint(
            ["guest_member_id"],
            ["members.id"],
            ondelete="RESTRICT",
            name=op.f("fk_guest_invitations_guest_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["host_member_id"],
            ["members.id"],
            ondelete="RESTRICT",
            name=op.f("fk_guest_invitations_host_member_id_members"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guest_invitations")),
    )
    op.create_index(op.f("ix_guest_invitations_site_id_day"), "guest_invitations",
                    ["site_id", "day"])  # fmt: skip
    op.create_index(op.f("ix_guest_invitations_guest_member_id"), "guest_invitations",
                    ["guest_member_id"])  # fmt: skip
    op.create_index(op.f("ix_guest_invitations_host_member_id"), "guest_invitations",
                    ["host_member_id"])  # fmt: skip
    op.create_table(
        "desk_checkins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("desk_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("booking_id", sa.Integer(), nullable=True),
        _instant("checked_in_at"),
        sa.ForeignKeyConstraint(
            ["desk_id"],
            ["desks.id"],
            ondelete="CASCADE",
            name=op.f("fk_desk_checkins_desk_id_desks"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            ondelete="CASCADE",
            name=op.f("fk_desk_checkins_member_id_members"),
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["bookings.id"],
            ondelete="SET NULL",
            name=op.f("fk_desk_checkins_booking_id_bookings"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_desk_checkins")),
    )
    op.create_index(op.f("ix_desk_checkins_desk_id_checked_in_at"), "desk_checkins",
                    ["desk_id", "checked_in_at"])  # fmt: skip
    op.create_index(op.f("ix_desk_checkins_member_id"), "desk_checkins", ["member_id"])
    op.create_table(
        "alarm_acks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alarm", sa.String(length=200), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("acknowledged_by", sa.String(length=100), nullable=False),
        _instant("acknowledged_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_acks")),
        sa.UniqueConstraint("alarm", name=op.f("uq_alarm_acks_alarm")),
    )
    op.create_index(op.f("ix_alarm_acks_site"), "alarm_acks", ["site"])
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("kind", type_=_audit_kind(*_KINDS, "alarm_ack"),
                           existing_type=_audit_kind(*_KINDS), existing_nullable=False)  # fmt: skip


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("kind", type_=_audit_kind(*_KINDS),
                           existing_type=_audit_kind(*_KINDS, "alarm_ack"),
                           existing_nullable=False)  # fmt: skip
    for table in ("alarm_acks", "desk_checkins", "guest_invitations", "badge_enrolments"):
        op.drop_table(table)
