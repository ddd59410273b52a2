"""The NOTIFY side of peer notifications: inside a step's transaction, tell the other replicas what it
committed (storage/listener.py is the LISTEN side; domain/notifications.py the payload)."""

from __future__ import annotations

from sqlalchemy import text

from ...domain.model import ChatStatus
from ...domain.notifications import ChatChanged
from .base import Conn, Database

# Every replica LISTENs on this channel.
NOTIFY_CHANNEL = "agentok_chat_events"
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


class Notifications(Database):
    @property
    def notifies(self) -> bool:
        """Whether other processes learn of each committed step (PostgreSQL's NOTIFY)."""
        return self.dialect == "postgresql"

    async def _notify(
        self,
        conn: Conn,
        chat_id: str,
        *,
        last_seq: int,
        first_seq: int | None = None,
        status: ChatStatus | None = None,
        deleted: bool = False,
    ) -> None:
        """Inside the step's transaction: PostgreSQL delivers it at commit, in commit order, or never."""
        if self.notifies:
            change = ChatChanged(
                chat_id, self.replica_id, first_seq=first_seq, last_seq=last_seq, status=status, deleted=deleted
            )
            await conn.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "payload": change.encode()})
