"""Idempotency claims: a request_id's row is written (response NULL) before its write runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 23:29:58.485390
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency", schema=None) as batch_op:
        batch_op.alter_column("response", existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    # Claims still in progress have no response to keep.
    op.execute("DELETE FROM idempotency WHERE response IS NULL")
    with op.batch_alter_table("idempotency", schema=None) as batch_op:
        batch_op.alter_column("response", existing_type=sa.LargeBinary(), nullable=False)
