"""Unit tests for run_flow: it runs a two-agent flow exactly as that chat alone (TwoAgentChat) runs, and a run is a
deterministic function of the flow, the first message and what its IO calls return, so that a run can be
rebuilt after a crash by replaying a journal of those results and then going on live."""

from __future__ import annotations

from typing import Any

import pytest

from agentok_server.domain.model import NewMessage
from agentok_server.engine.code_execution import CodeBlock
from agentok_server.engine.flow_run import run_flow
from agentok_server.engine.flow_spec import AgentSpec, parse_flow

from .scripted import NoTools, ScriptedIO, ScriptedModel, agent, converse, first_chat, flow, group, nested, run

# --------------------------------------------------------------------------------------------------
# a single two-agent chat: the same as that chat alone


@pytest.mark.parametrize(
    ("a", "b", "edge", "answers"),
    [
        (agent("A", "A", max_consecutive_auto_reply=2), agent("B", "B", max_consecutive_auto_reply=2), {}, []),
        (agent("A", "A"), agent("B", "B"), {"max_turns": 2}, []),
        (agent("A", "A", mode="ALWAYS", max_consecutive_auto_reply=1), agent("B", "B"), {}, ["", "typed", "exit"]),
        (agent("A", "A", mode="TERMINATE"), agent("B", "TERMINATE"), {}, ["go on", ""]),
        (agent("A", "A"), agent("B", "B", mode="ALWAYS", max_consecutive_auto_reply=1), {"max_turns": 3}, ["", ""]),
    ],
    ids=["mcar", "max_turns", "always", "terminate", "always-max_turns"],
)
async def test_two_agent_flow_runs_as_two_agent_conversation(
    a: dict[str, Any], b: dict[str, Any], edge: dict[str, Any], answers: list[str]
) -> None:
    graph = flow("A", [a, b], [converse("A", "B", **edge)])
    out = await run(graph, first="hello", answers=answers)
    io = ScriptedIO(answers)
    reason = await first_chat(parse_flow(graph), ScriptedModel()).run("hello", io)
    assert (out.io.routed(), out.io.prompts, out.reason) == (io.routed(), io.prompts, reason)


async def test_two_agent_flow_with_models_runs_as_two_agent_conversation() -> None:
    graph = flow("A", [agent("A", "A", max_consecutive_auto_reply=1), agent("B", llm=True)], [converse("A", "B")])
    out = await run(graph, replies=["b1", "b2"])
    model = ScriptedModel(["b1", "b2"])
    await first_chat(parse_flow(graph), model).run("task", ScriptedIO())
    assert out.model.calls == model.calls


# --------------------------------------------------------------------------------------------------
# determinism and replay

# u -> a (a answers with its nested chat with c; reflection summary), then u -> group g1 (random), then
# u -> group g2 (auto, introductions, a member asked ALWAYS; no message: the person is asked for one).
EVERYTHING = flow(
    "u",
    [
        agent("u", "U-auto"),
        agent("a", llm=True, system_message="SYS-A"),
        nested(),
        agent("c", "C"),
        group("g1", max_round=3, speaker_selection_method="random"),
        agent("m1", "M1", parent="g1"),
        agent("m2", "M2", parent="g1"),
        group("g2", max_round=3, speaker_selection_method="auto", send_introductions=True),
        agent("p1", "P1", parent="g2"),
        agent("h", node_type="user", mode="ALWAYS", parent="g2"),
    ],
    [
        converse("u", "a", max_turns=2, summary_method="reflection_with_llm"),
        converse("a", "n"),
        converse("n", "c", max_turns=1),
        converse("u", "g1", instructions="round two"),
        converse("u", "g2"),
    ],
)
SCRIPT: dict[str, Any] = {
    "replies": ["S1", "h", "p1"],
    "choices": ["m2", "u"],
    "answers": ["typed", "hello"],
}
EXPECTED = [
    ("a", "c", "task"),
    ("c", "a", "C"),
    ("a", "u", "C"),
    ("u", "a", "U-auto"),
    ("a", "c", "U-auto"),
    ("c", "a", "C"),
    ("a", "u", "C"),
    ("u", "chat_manager", "round two\nContext: \nS1"),
    ("m2", "chat_manager", "M2"),
    ("u", "chat_manager", "U-auto"),
    ("u", "chat_manager", "typed\nContext: \nS1\nU-auto"),
    ("chat_manager", "", "_intro_"),
    ("h", "chat_manager", "hello"),
    ("p1", "chat_manager", "P1"),
]


def kinds(log: list[tuple[Any, ...]]) -> list[str]:
    return [entry[0] for entry in log]


async def test_everything_flow_runs_as_expected() -> None:
    out = await run(EVERYTHING, **SCRIPT)
    routed = [(s, r, "_intro_" if s == "chat_manager" else c) for s, r, c in out.io.routed()]
    assert routed == EXPECTED
    assert out.io.prompts[0] == ("u", ">")
    assert kinds(out.io.log).count("complete") == 3


async def test_same_inputs_same_run() -> None:
    first, second = await run(EVERYTHING, **SCRIPT), await run(EVERYTHING, **SCRIPT)
    assert first.io.log == second.io.log  # every say, question, choice and model call, in order, with results
    assert first.reason == second.reason
    assert len(first.io.log) == len(EXPECTED) + 7


class JournalIO(NoTools):
    """Like the domain's run: serves recorded results from a journal while it lasts (storing nothing said
    again), then goes on live with the script."""

    def __init__(self, journal: list[tuple[Any, ...]], live: ScriptedIO, model: ScriptedModel) -> None:
        self.journal = list(journal)
        self.live = live
        self.model = model
        self.stored: list[NewMessage] = []

    def _replayed(self, kind: str) -> tuple[Any, ...] | None:
        if not self.journal:
            return None
        entry = self.journal.pop(0)
        assert entry[0] == kind, f"the journal has {entry[0]!r} where the run now does {kind!r}"
        return entry

    async def say(self, message: NewMessage, *, agent_turn: bool) -> None:
        entry = self._replayed("say")
        if entry is not None:
            assert entry[1] == message
            return
        self.stored.append(message)

    async def run_code(self, agent: AgentSpec, blocks: list[CodeBlock]) -> str:
        raise AssertionError("no agent of these flows executes code")

    async def ask_human(self, agent: AgentSpec | None, prompt: str) -> str:
        entry = self._replayed("ask")
        if entry is not None:
            assert entry[1:3] == (agent.name if agent else None, prompt)
            return str(entry[3])
        return await self.live.ask_human(agent, prompt)

    async def choose(self, options: list[str]) -> str:
        entry = self._replayed("choose")
        if entry is not None:
            assert entry[1] == options
            return str(entry[2])
        return await self.live.choose(options)

    async def complete(self, spec: AgentSpec, messages: list[dict[str, Any]]) -> str:
        entry = self._replayed("complete")
        if entry is not None:
            assert entry[1:3] == (spec.name, messages)
            return str(entry[3])
        return await self.model(spec, messages)


async def test_a_run_resumed_from_any_point_of_its_journal_ends_the_same() -> None:
    full = await run(EVERYTHING, **SCRIPT)
    journal = full.io.log
    for cut in range(len(journal) + 1):
        done = journal[:cut]
        # What the live part still needs: the script past what the journal already answered.
        used = {kind: sum(1 for e in done if e[0] == kind) for kind in ("ask", "choose", "complete")}
        live = ScriptedIO(SCRIPT["answers"][used["ask"] :], SCRIPT["choices"][used["choose"] :])
        model = ScriptedModel(SCRIPT["replies"][used["complete"] :])
        io = JournalIO(done, live, model)
        reason = await run_flow(parse_flow(EVERYTHING), "task", io, io.complete)
        assert reason == full.reason
        stored_before = [e[1] for e in done if e[0] == "say"]
        assert stored_before + io.stored == full.io.messages, f"cut at {cut}"
        assert live.answers == live.choices == model.replies == []
