"""SendMessage when the chat changed between ChatService's read and its write: a chat that is startable again
(another run began and ended in between) gets its run, a chat that keeps changing is ABORTED (retry), and in
no case is a chat that exists reported as not found."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from agentok_server.domain.chats import START_ATTEMPTS
from agentok_server.domain.errors import Aborted
from agentok_server.domain.model import ChatStatus
from agentok_server.domain.ports import StepItem, StepResult

from ..support.memory_services import ASKING, OWNER, MakeServices, contents, new_chat
from ..support.memory_store import MemoryStore


class LosesStarts(MemoryStore):
    """Loses the race to start a run `losses` times, as if each time another request's run started and
    ended between ChatService's read and its write: the chat is startable again when it looks."""

    def __init__(self, losses: int) -> None:
        super().__init__()
        self.losses = losses

    async def apply_step(self, chat_id: str, items: Sequence[StepItem], **kwargs: Any) -> StepResult | None:
        if kwargs.get("start_run") is not None and self.losses > 0:
            self.losses -= 1
            return None
        return await super().apply_step(chat_id, items, **kwargs)


async def test_a_start_lost_to_a_run_that_already_ended_is_tried_again(services: MakeServices) -> None:
    s = services(LosesStarts(losses=START_ATTEMPTS - 1))
    chat_id = await new_chat(s, ASKING)
    chat, message = await s.chats.send_message(OWNER, chat_id, "hi")
    assert (chat.status, chat.run.run_no, message.content) == (ChatStatus.RUNNING, 1, "hi")
    assert await contents(s, chat_id) == ["hi"]


async def test_a_chat_that_keeps_changing_is_aborted_not_reported_missing(services: MakeServices) -> None:
    s = services(LosesStarts(losses=START_ATTEMPTS))
    chat_id = await new_chat(s, ASKING)
    with pytest.raises(Aborted) as changed:
        await s.chats.send_message(OWNER, chat_id, "hi")
    assert changed.value.reason == "CHAT_CHANGED" and changed.value.metadata == {"chat_id": chat_id}
    assert await contents(s, chat_id) == []
    assert (await s.chats.get(OWNER, chat_id)).status is ChatStatus.READY
