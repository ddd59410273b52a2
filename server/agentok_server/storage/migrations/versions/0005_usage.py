"""Usage: the tokens a model reported for each stored model message and each journaled model reply, the
chat's running totals (this run and all time), and its token budget per run.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 04:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# NULL where the provider reported nothing (and on rows written before this migration).
_REPORTED = ("prompt_tokens", "completion_tokens", "total_tokens")
# Counters that start at zero, existing chats included.
_CHAT_COUNTERS = (
    "run_prompt_tokens",
    "run_completion_tokens",
    "run_total_tokens",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
)


def upgrade() -> None:
    for table in ("message", "run_step"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in _REPORTED:
                batch_op.add_column(sa.Column(column, sa.Integer(), nullable=True))
    with op.batch_alter_table("chat", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_tokens_per_run", sa.BigInteger(), nullable=False, server_default="0"))
        for column in _CHAT_COUNTERS:
            batch_op.add_column(sa.Column(column, sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("chat", schema=None) as batch_op:
        for column in (*reversed(_CHAT_COUNTERS), "max_tokens_per_run"):
            batch_op.drop_column(column)
    for table in ("run_step", "message"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in reversed(_REPORTED):
                batch_op.drop_column(column)
