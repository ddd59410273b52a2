"""Tools: the tool table (ids unique per owner), tool calls and results on messages, and the client tool calls
a waiting chat (and its status events) carry.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "tool",
        sa.Column("owner", _TEXT(), nullable=False),
        sa.Column("id", _TEXT(), nullable=False),
        sa.Column("name", _TEXT(), nullable=False),
        sa.Column("description", _TEXT(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("kind", _TEXT(), nullable=False),
        sa.Column("url", _TEXT(), nullable=False),
        sa.Column("code", _TEXT(), nullable=False),
        sa.Column("secrets", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", "id"),
    )
    op.create_index("ix_tool_owner_created", "tool", ["owner", "created_at", "id"], unique=False)
    for table, columns in (
        ("message", ("tool_calls", "tool_responses")),
        ("chat", ("pending_tool_calls",)),
        ("status_event", ("pending_tool_calls",)),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.add_column(sa.Column(column, sa.JSON(), nullable=True))


def downgrade() -> None:
    for table, columns in (
        ("status_event", ("pending_tool_calls",)),
        ("chat", ("pending_tool_calls",)),
        ("message", ("tool_calls", "tool_responses")),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.drop_column(column)
    op.drop_index("ix_tool_owner_created", table_name="tool")
    op.drop_table("tool")
