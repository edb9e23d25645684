"""People who sign in: accounts, sessions, one-time links, attempts, the cookie secret.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROLE = sa.Enum(
    "admin", "manager", "member", name="role", native_enum=False, create_constraint=True, length=16
)


def _instant(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    # New tables only: nothing existing is altered, so SQLite needs no table rebuild.
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.LargeBinary(length=64), nullable=False),
        _instant("created_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_server_secrets")),
    )
    op.create_table(
        "signin_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=320), nullable=False),
        _instant("at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signin_attempts")),
    )
    op.create_index(op.f("ix_signin_attempts_at"), "signin_attempts", ["at"])
    op.create_index(
        op.f("ix_signin_attempts_scope_subject_at"), "signin_attempts", ["scope", "subject", "at"]
    )
    op.create_table(
        "people",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("role", _ROLE, nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("member_id", sa.Integer(), nullable=True),
        sa.Column("locale", sa.String(length=2), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _instant("created_at"),
        _instant("password_changed_at", nullable=True),
        sa.CheckConstraint(
            "(role = 'manager') = (site_id IS NOT NULL)"
            " AND (role = 'member') = (member_id IS NOT NULL)",
            name=op.f("ck_people_scope"),
        ),
        sa.CheckConstraint("locale IN ('fr', 'en')", name=op.f("ck_people_locale")),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_people_member_id_members"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_people_site_id_sites"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_people")),
        sa.UniqueConstraint("email", name=op.f("uq_people_email")),
        sa.UniqueConstraint("member_id", name=op.f("uq_people_member_id")),
    )
    op.create_table(
        "one_time_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        _instant("created_at"),
        _instant("expires_at"),
        _instant("used_at", nullable=True),
        sa.CheckConstraint(
            "purpose IN ('signin', 'reset')", name=op.f("ck_one_time_tokens_purpose")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_one_time_tokens_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_one_time_tokens")),
        sa.UniqueConstraint("hash", name=op.f("uq_one_time_tokens_hash")),
    )
    op.create_index(op.f("ix_one_time_tokens_person_id"), "one_time_tokens", ["person_id"])
    op.create_table(
        "signin_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("api_key_id", sa.Integer(), nullable=True),
        _instant("created_at"),
        _instant("last_seen_at"),
        _instant("expires_at"),
        _instant("revoked_at", nullable=True),
        sa.CheckConstraint(
            "(person_id IS NULL) != (api_key_id IS NULL)", name=op.f("ck_signin_sessions_holder")
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_signin_sessions_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_signin_sessions_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signin_sessions")),
        sa.UniqueConstraint("hash", name=op.f("uq_signin_sessions_hash")),
    )
    op.create_index(op.f("ix_signin_sessions_api_key_id"), "signin_sessions", ["api_key_id"])
    op.create_index(op.f("ix_signin_sessions_person_id"), "signin_sessions", ["person_id"])


def downgrade() -> None:
    op.drop_table("signin_sessions")
    op.drop_table("one_time_tokens")
    op.drop_table("people")
    op.drop_table("signin_attempts")
    op.drop_table("server_secrets")
