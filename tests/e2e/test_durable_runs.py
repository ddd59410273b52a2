"""Runs survive the server: killed (SIGKILL) or stopped (SIGTERM) mid-run, a restarted server resumes every
run from its journal, with no message lost or duplicated and watchers able to resume gap-free."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support.api import Rest, real_flow, two_agent_flow, unique_model, with_model
from ..support.fake_llm import FakeLlm, FakeLlmServer
from ..support.stack import Stack, create_key


@pytest.fixture()
def own_stack(tmp_path: Path, llm_server: FakeLlmServer) -> Iterator[tuple[Stack, Rest]]:
    stack = Stack(tmp_path, llm_server.base_url).start()
    _, key = create_key(stack.env, "k", "dora")
    try:
        yield stack, Rest(stack.rest_url, key)
    finally:
        stack.stop()


def _seqs_contiguous(rest: Rest, chat_id: str) -> list[dict[str, Any]]:
    events = rest.wait_status(chat_id, 0, {"completed", "error"})
    seqs = [int(e["seq"]) for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs  # gap-free and nothing twice
    return events


def test_sigkill_mid_model_call_resumes_and_repeats_the_call(own_stack: tuple[Stack, Rest], fake_llm: FakeLlm) -> None:
    stack, rest = own_stack
    model = unique_model("slowonce-30")  # the first call hangs; the repeated one answers at once
    fake_llm.script(model, [])
    flow = two_agent_flow(
        a={"human_input_mode": "NEVER", "default_auto_reply": "A", "max_consecutive_auto_reply": 1},
        b={"max_consecutive_auto_reply": 5},
    )
    flow["llm_config"] = {"model": model}
    chat = rest.create_chat(rest.create_flow(flow)["id"])
    rest.send(chat["id"], "hello")
    assert rest.chat(chat["id"])["status"] == "running"
    fake_llm.wait_for_requests(model, 1)  # the call is in flight (not merely about to be made) when killed

    stack.server.stop(signal.SIGKILL)
    stack.server.start()

    events = _seqs_contiguous(rest, chat["id"])
    assert events[-1]["status_changed"]["status"] == "completed"
    # The user proxy replies once (mcar 1) and stops: hello, B, A, B; each message exactly once.
    contents = [m["content"] for m in rest.messages(chat["id"])]
    assert contents == ["hello", "hello ack", "A", "A ack"]
    # The call in flight at the crash was made again after the restart.
    assert len(fake_llm.requests_for(model)) == 3


def test_a_waiting_chat_still_waits_after_sigkill_and_continues_where_it_was(own_stack: tuple[Stack, Rest]) -> None:
    stack, rest = own_stack
    flow = two_agent_flow(
        a={"human_input_mode": "ALWAYS"},
        b={"disable_llm": True, "default_auto_reply": "B"},
        edge={"max_turns": 3},
    )
    chat = rest.create_chat(rest.create_flow(flow)["id"])
    sent = rest.send(chat["id"], "hello")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"wait_for_human_input"})
    answered = rest.input(chat["id"], "x")
    rest.wait_status(chat["id"], int(answered["last_seq"]), {"wait_for_human_input"})
    before = rest.chat(chat["id"])

    stack.server.stop(signal.SIGKILL)
    stack.server.start()

    after = rest.chat(chat["id"])
    assert after["status"] == "wait_for_human_input"
    assert after["input_prompt"] == before["input_prompt"] and after["last_seq"] == before["last_seq"]
    answered = rest.input(chat["id"], "y")
    rest.wait_status(chat["id"], int(answered["last_seq"]), {"completed"})
    # max_turns 3 counted across the restart: three rounds, not three more.
    assert [m["content"] for m in rest.messages(chat["id"])] == ["hello", "B", "x", "B", "y", "B"]
    _seqs_contiguous(rest, chat["id"])


def test_sigterm_ends_watch_streams_with_a_final_event_and_runs_resume(
    own_stack: tuple[Stack, Rest], fake_llm: FakeLlm
) -> None:
    stack, rest = own_stack
    model = unique_model("slowonce-30")
    flow = with_model(real_flow("14"), model)
    fake_llm.script(model, [])
    chat = rest.create_chat(rest.create_flow(flow)["id"])
    waiting = rest.create_chat(rest.create_flow(with_model(real_flow("13"), "m"))["id"])
    sent = rest.send(waiting["id"], "hi")
    rest.wait_status(waiting["id"], int(sent["last_seq"]), {"wait_for_human_input"})
    rest.send(chat["id"], "hello")

    seen: list[dict[str, Any]] = []
    ready = threading.Event()

    def watch() -> None:
        with httpx.stream(
            "GET", f"{stack.rest_url}/chats/{chat['id']}/watch", headers=rest.http.headers, timeout=30
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line.removeprefix("data:"))["event"]
                    seen.append(event)
                    ready.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert ready.wait(10)
    assert stack.server.stop(signal.SIGTERM) == 0  # a clean exit
    watcher.join(10)
    assert not watcher.is_alive()
    assert "server_shutdown" in seen[-1], seen[-1]

    # What the watcher saw before the shutdown: 1..k with no gap, and the final event says where it stopped.
    stored = [int(e["seq"]) for e in seen if "message_added" in e or "status_changed" in e]
    assert stored == list(range(1, len(stored) + 1)), seen
    last = stored[-1]
    assert int(seen[-1]["seq"]) == last

    stack.server.start()
    assert rest.chat(waiting["id"])["status"] == "wait_for_human_input"
    # The watcher reconnects after the last seq it saw: the next event is exactly the one after it, and the
    # rest follow with no gap and nothing repeated.
    resumed = rest.wait_status(chat["id"], last, {"completed", "error"})
    seqs = [int(e["seq"]) for e in resumed]
    assert seqs[0] == last + 1 and seqs == list(range(last + 1, last + 1 + len(seqs))), seqs
    assert resumed[-1]["status_changed"]["status"] == "completed"
    events = _seqs_contiguous(rest, chat["id"])  # and a watcher replaying from 0 sees the same history
    assert [e for e in events if int(e["seq"]) > last] == resumed
    done = rest.input(waiting["id"], "exit")
    rest.wait_status(waiting["id"], int(done["last_seq"]), {"completed"})


def test_a_run_that_no_longer_replays_after_a_restart_ends_in_error(own_stack: tuple[Stack, Rest]) -> None:
    """Journaled with code execution off, resumed with it on: the user proxy now runs the code where it
    used to auto-reply, so the run can't be rebuilt; it ends `error` saying why, and runs nowhere."""
    stack, rest = own_stack
    code = "```python\nprint(6 * 7)\n```"
    flow = two_agent_flow(
        a={"human_input_mode": "ALWAYS", "enable_code_execution": True},
        b={"disable_llm": True, "default_auto_reply": code},
        edge={"max_turns": 3},
    )
    chat = rest.create_chat(rest.create_flow(flow)["id"])
    sent = rest.send(chat["id"], "hello")
    rest.wait_status(chat["id"], int(sent["last_seq"]), {"wait_for_human_input"})
    answered = rest.input(chat["id"], "")  # skip: the user proxy auto-replies (no code execution: empty)
    rest.wait_status(chat["id"], int(answered["last_seq"]), {"wait_for_human_input"})
    before = rest.chat(chat["id"])
    said = [m["content"] for m in rest.messages(chat["id"])]
    assert said == ["hello", code, "", code]
    other = rest.create_chat(rest.create_flow(two_agent_flow(a={"human_input_mode": "ALWAYS"}))["id"])
    sent = rest.send(other["id"], "hi")
    rest.wait_status(other["id"], int(sent["last_seq"]), {"wait_for_human_input"})

    stack.server.stop(signal.SIGTERM)
    stack.env["AGENTOK_CODE_EXECUTION_ENABLED"] = "true"  # the restarted server runs code
    stack.server.start()

    events = rest.wait_status(chat["id"], int(before["last_seq"]), {"error", "completed", "running"})
    assert events[-1]["status_changed"]["status"] == "error", events
    failed = rest.chat(chat["id"])
    assert failed["status"] == "error"
    assert "could not be resumed after a restart" in failed["error"]
    assert "where the run stored a message before the restart, it now ran code" in failed["error"], failed["error"]
    assert "AGENTOK_CODE_EXECUTION_ENABLED" in failed["error"]
    assert [m["content"] for m in rest.messages(chat["id"])] == said  # nothing stored twice, no code run
    # No chat is left running: the other one, which replays fine, still waits for its person.
    statuses = {c["id"]: c["status"] for c in rest.chats()}
    assert statuses == {chat["id"]: "error", other["id"]: "wait_for_human_input"}
    # The error is an end like any other: a new message starts a new run.
    assert rest.send(chat["id"], "again")["status"] == "running"


def test_restart_in_every_status(own_stack: tuple[Stack, Rest], fake_llm: FakeLlm) -> None:
    """ready, completed and error stay as they were; a question asked before any agent spoke still waits."""
    stack, rest = own_stack
    ready = rest.create_chat(rest.create_flow(with_model(real_flow("14"), "m"))["id"])
    completed = rest.create_chat(
        rest.create_flow(
            two_agent_flow(
                a={"human_input_mode": "NEVER", "max_consecutive_auto_reply": 0},
                b={"disable_llm": True, "default_auto_reply": "B"},
            )
        )["id"]
    )
    sent = rest.send(completed["id"], "hello")
    rest.wait_status(completed["id"], int(sent["last_seq"]), {"completed"})
    failed = rest.create_chat(rest.create_flow(with_model(real_flow("14"), "fail-500"))["id"])
    sent = rest.send(failed["id"], "hello")
    rest.wait_status(failed["id"], int(sent["last_seq"]), {"error"})
    # The recipient asks a person before anyone else speaks: the run's journal is still empty.
    asks_first = rest.create_chat(
        rest.create_flow(
            two_agent_flow(
                a={"human_input_mode": "NEVER", "default_auto_reply": "A"},
                b={"disable_llm": True, "default_auto_reply": "B", "human_input_mode": "ALWAYS"},
            )
        )["id"]
    )
    sent = rest.send(asks_first["id"], "hello")
    rest.wait_status(asks_first["id"], int(sent["last_seq"]), {"wait_for_human_input"})
    before = {c["id"]: rest.chat(c["id"]) for c in (ready, completed, failed, asks_first)}

    for sig in (signal.SIGKILL, signal.SIGTERM):
        stack.server.stop(sig)
        stack.server.start()
        for chat_id, was in before.items():
            now = rest.chat(chat_id)
            assert (now["status"], now["last_seq"], now["error"]) == (was["status"], was["last_seq"], was["error"])

    done = rest.input(asks_first["id"], "exit")
    rest.wait_status(asks_first["id"], int(done["last_seq"]), {"completed"})
    assert [m["content"] for m in rest.messages(asks_first["id"])] == ["hello"]
