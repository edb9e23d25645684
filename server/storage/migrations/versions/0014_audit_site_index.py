"""An index for a site's audit log newest first: without it, SQLite reads the site's
rows through the agent-seq index and sorts them all for every page of the log.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_audit_log_site_id"), "audit_log", ["site", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_log_site_id"), table_name="audit_log")
