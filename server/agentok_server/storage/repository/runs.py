"""Runs: the steps they append to a chat (with their journal), the run leases that say which replica
executes each, and the per-owner count of runs in progress."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, text, update

from ...domain.model import ChatEvent, ChatStatus, JournalEntry, NewMessage
from ...domain.ports import RunLimitReached, StepItem, StepResult
from .. import convert
from ..tables import MessageRow, StatusEventRow
from .base import CHAT, MESSAGE, RUN_STEP, STATUS_EVENT, Conn, new_id, now
from .chats import GET_CHAT, GET_CHAT_ANY_OWNER
from .notifications import Notifications

_IN_RUN = [ChatStatus.RUNNING.value, ChatStatus.WAITING.value]


def _usage_totals(row: Any, journal: Sequence[JournalEntry], *, new_run: bool) -> dict[str, int | None]:
    """The chat's token counter columns after a step that journals `journal`."""
    if not new_run and not any(e.usage is not None for e in journal):
        return {}
    usage = convert.chat_usage(row).after(journal, new_run=new_run)
    return {f"run_{k}": v for k, v in convert.usage_columns(usage.run).items()} | convert.usage_columns(usage.total)


class RunQueries(Notifications):
    async def apply_step(
        self,
        chat_id: str,
        items: Sequence[StepItem],
        *,
        require: Sequence[ChatStatus] | None = None,
        owner: str | None = None,
        journal: Sequence[JournalEntry] = (),
        start_run: str | None = None,
        run_no: int | None = None,
        holder: str | None = None,
        lease_until: datetime | None = None,
        max_runs_per_owner: int | None = None,
        at_step: int | None = None,
    ) -> StepResult | None:
        """Appends messages, status changes and run-journal entries to a chat as one transaction.

        Returns None, writing nothing, when the chat is gone (or not the owner's), its status is not in
        `require`, or `run_no` is given and is no longer the chat's run: the checks and the writes share the
        transaction, so two concurrent callers cannot both pass them. `start_run` begins a new run (its
        first message) with an empty journal.

        `holder` fences a run's own steps: they are written only while that replica holds the chat's run
        lease (a replica that lost it to a takeover writes nothing more). `lease_until` (with `holder`)
        grants or extends the lease in the same transaction, as a new run does. A step that leaves the
        run's statuses releases the lease.

        `max_runs_per_owner` (with `start_run` and `owner`) raises RunLimitReached, writing nothing, when the
        owner already has that many runs in progress. The count shares the transaction that starts the run,
        and starts are serialized per owner (PostgreSQL: an advisory lock held to commit; SQLite: its one
        writer), so two racing starts cannot both pass it.
        """
        at = now()
        async with self._write() as conn:
            cap = max_runs_per_owner if start_run is not None else None
            if cap is not None:
                assert owner is not None, "the run cap counts one owner's runs"
                if conn.dialect.name == "postgresql":
                    await conn.execute(_LOCK_OWNER_RUNS, {"owner": owner})
            row = await _lock_chat(conn, chat_id, owner)
            if row is None or (require is not None and ChatStatus(row.status) not in require):
                return None
            if run_no is not None and row.run_no != run_no:
                return None
            # A writer that decided from what it read (which client tool calls are still pending) loses to
            # one that wrote since.
            if at_step is not None and row.run_steps != at_step:
                return None
            if holder is not None and lease_until is None and row.lease_holder != holder:
                return None
            if cap is not None and await _runs_in_progress(conn, row.owner) >= cap:
                raise RunLimitReached(cap)
            seq = row.last_seq
            events: list[ChatEvent] = []
            values: dict[str, Any] = {"updated_at": at}
            current_run, steps = row.run_no, row.run_steps
            if start_run is not None:
                current_run, steps = current_run + 1, 0
                values.update(run_no=current_run, run_input=start_run)
            for entry in journal:
                steps += 1
                await conn.execute(
                    RUN_STEP.insert().values(
                        chat_id=chat_id,
                        run_no=current_run,
                        step_no=steps,
                        kind=entry.kind,
                        value=entry.value,
                        created_at=at,
                        **convert.usage_columns(entry.usage),
                    )
                )
            values["run_steps"] = steps
            values.update(_usage_totals(row, journal, new_run=start_run is not None))
            for item in items:
                seq += 1
                if isinstance(item, NewMessage):
                    msg_row: dict[str, Any] = {
                        "id": new_id(),
                        "chat_id": chat_id,
                        "seq": seq,
                        "type": item.type.value,
                        "sender": item.sender,
                        "receiver": item.receiver,
                        "content": item.content,
                        "created_at": at,
                        "tool_calls": convert.tool_calls_json(item.tool_calls),
                        "tool_responses": convert.tool_results_json(item.tool_responses),
                        **convert.usage_columns(item.usage),
                    }
                    await conn.execute(MESSAGE.insert().values(**msg_row))
                    events.append(convert.message_event(MessageRow(**msg_row)))
                else:
                    ev_row: dict[str, Any] = {
                        "chat_id": chat_id,
                        "seq": seq,
                        "status": item.status.value,
                        "error": item.error,
                        "input_prompt": item.input_prompt,
                        "created_at": at,
                        "pending_tool_calls": convert.tool_calls_json(item.pending_tool_calls),
                    }
                    await conn.execute(STATUS_EVENT.insert().values(**ev_row))
                    events.append(convert.status_event(StatusEventRow(**ev_row)))
                    values.update(
                        status=item.status.value,
                        error=item.error,
                        input_prompt=item.input_prompt,
                        input_deadline=item.input_deadline,
                        pending_tool_calls=ev_row["pending_tool_calls"],
                    )
            values["last_seq"] = seq
            if lease_until is not None:
                values.update(lease_holder=holder, lease_expires_at=lease_until)
            status = ChatStatus(values.get("status", row.status))
            if not status.in_run:
                values.update(lease_holder=None, lease_expires_at=None)
            await conn.execute(update(CHAT).where(CHAT.c.id == chat_id).values(**values))
            if events:
                await self._notify(conn, chat_id, first_seq=events[0].seq, last_seq=seq, status=status)
            updated = row._asdict() | values
        return StepResult(chat=convert.chat(_Merged(updated)), events=events)

    async def count_runs_in_progress(self, owner: str) -> int:
        """The owner's chats whose run is in progress (running or waiting for a person)."""
        async with self._read() as conn:
            return await _runs_in_progress(conn, owner)

    async def journal(
        self, chat_id: str, run_no: int, after_step: int = 0, limit: int | None = None
    ) -> list[JournalEntry]:
        query = (
            select(
                RUN_STEP.c.kind,
                RUN_STEP.c.value,
                RUN_STEP.c.prompt_tokens,
                RUN_STEP.c.completion_tokens,
                RUN_STEP.c.total_tokens,
            )
            .where(RUN_STEP.c.chat_id == chat_id, RUN_STEP.c.run_no == run_no, RUN_STEP.c.step_no > after_step)
            .order_by(RUN_STEP.c.step_no)
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        return [JournalEntry(kind=r.kind, value=r.value, usage=convert.usage(r)) for r in rows]

    async def acquire_lease(self, chat_id: str, holder: str, until: datetime) -> bool:
        """Takes the chat's run lease if its run is in progress and nobody else holds a live lease."""
        at = now()
        query = (
            update(CHAT)
            .where(
                CHAT.c.id == chat_id,
                CHAT.c.status.in_(_IN_RUN),
                CHAT.c.lease_holder.is_(None) | (CHAT.c.lease_holder == holder) | (CHAT.c.lease_expires_at < at),
            )
            .values(lease_holder=holder, lease_expires_at=until)
        )
        async with self._write() as conn:
            return bool((await conn.execute(query)).rowcount)

    async def renew_leases(self, holder: str, chat_ids: Sequence[str], until: datetime) -> dict[str, ChatStatus]:
        """Extends the holder's leases on these chats; returns the ones it still holds, with their status
        (a chat missing from the answer was deleted, ended by someone else, or taken over)."""
        if not chat_ids:
            return {}
        query = (
            update(CHAT)
            .where(CHAT.c.id.in_(list(chat_ids)), CHAT.c.lease_holder == holder, CHAT.c.status.in_(_IN_RUN))
            .values(lease_expires_at=until)
            .returning(CHAT.c.id, CHAT.c.status)
        )
        async with self._write() as conn:
            return {r.id: ChatStatus(r.status) for r in (await conn.execute(query)).all()}

    async def release_leases(self, holder: str) -> None:
        """Shutdown: the holder's runs may be taken over at once instead of when their leases lapse."""
        query = update(CHAT).where(CHAT.c.lease_holder == holder).values(lease_expires_at=now())
        async with self._write() as conn:
            await conn.execute(query)

    async def unheld_runs(self, limit: int = 100) -> list[str]:
        """Chats whose run is in progress but held by nobody alive: candidates for a takeover."""
        at = now()
        query = (
            select(CHAT.c.id)
            .where(
                CHAT.c.status.in_(_IN_RUN),
                CHAT.c.lease_holder.is_(None) | (CHAT.c.lease_expires_at < at),
            )
            .limit(limit)
        )
        async with self._read() as conn:
            return [r.id for r in (await conn.execute(query)).all()]

    async def held_runs(self, holder: str) -> list[str]:
        """Chats whose run this holder's lease covers (a restarted replica reclaims them at once)."""
        query = select(CHAT.c.id).where(CHAT.c.status.in_(_IN_RUN), CHAT.c.lease_holder == holder)
        async with self._read() as conn:
            return [r.id for r in (await conn.execute(query)).all()]


class _Merged(dict[str, Any]):
    """A chat row merged with a step's changes, read like a row by the converters."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


# Serializes one owner's run starts on PostgreSQL until commit; the first key keeps this lock's hashes apart
# from any other advisory lock's. Two owners whose names hash alike merely wait for each other.
_OWNER_RUNS_LOCK_CLASS = 0x61676B72  # "agkr"
_LOCK_OWNER_RUNS = text(f"SELECT pg_advisory_xact_lock({_OWNER_RUNS_LOCK_CLASS}, hashtext(:owner))")
_COUNT_RUNS_IN_PROGRESS = select(func.count()).where(CHAT.c.owner == bindparam("owner"), CHAT.c.status.in_(_IN_RUN))


async def _runs_in_progress(conn: Conn, owner: str) -> int:
    return int((await conn.execute(_COUNT_RUNS_IN_PROGRESS, {"owner": owner})).scalar_one())


async def _lock_chat(conn: Conn, chat_id: str, owner: str | None) -> Any:
    query = GET_CHAT if owner is not None else GET_CHAT_ANY_OWNER
    if conn.dialect.name != "sqlite":
        query = query.with_for_update()
    return (await conn.execute(query, {"chat_id": chat_id, "owner": owner})).first()
