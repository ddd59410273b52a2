"""Tool calls in the engine, as AutoGen 0.14.1 makes them (docs/autogen-semantics.md §8): the caller's model
is offered the tools, its calls are a message to the executor, whose reply runs them after its human and
termination checks; what each model is sent afterwards; errors the model sees; how turns are counted."""

from __future__ import annotations

from typing import Any

from agentok_server.domain.model import MessageType, ToolCall
from agentok_server.engine.flow_spec import SpeakerSelection, parse_flow
from agentok_server.engine.speaker_selection import select_speaker
from agentok_server.engine.tool_calls import ModelReply, ToolDef

from .flow_spec_support import real_flow
from .scripted import ScriptedIO, ScriptedModel, agent, converse, flow, run

PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
CALCULATOR = ToolDef("7", "calculator", "A simple calculator", PARAMS)
SEARCH = ToolDef("8", "search", "Searches the web", {"type": "object", "properties": {"q": {"type": "string"}}})
TOOLS = {"7": CALCULATOR, "8": SEARCH}


def call(call_id: str, name: str = "calculator", arguments: str = '{"a": 2, "b": 3}') -> ToolCall:
    return ToolCall(call_id, name, arguments)


def calls(*tool_calls: ToolCall) -> ModelReply:
    return ModelReply("", tool_calls)


def pair(*, mode: str = "NEVER", mcar: int = 5, tools: list[Any] | None = None, **edge: Any) -> dict[str, Any]:
    """u (executor, no model, replies "fine") starts a chat with a (a model offered the edge's tools)."""
    return flow(
        "u",
        [agent("u", "fine", mode=mode, max_consecutive_auto_reply=mcar), agent("a", llm=True)],
        [converse("u", "a", tools=[7] if tools is None else tools, **edge)],
    )


async def test_the_caller_is_offered_the_tool_and_the_executor_runs_its_call() -> None:
    done = await run(
        pair(mcar=2),
        proposals=[calls(call("c1")), ModelReply("The answer is 5"), ModelReply("done")],
        tools=TOOLS,
        results={"calculator": "5"},
    )
    m = done.io.messages
    # The first message ("task") is stored before the run; the run says the rest.
    assert [(x.sender, x.type, x.content) for x in m] == [
        ("a", MessageType.ASSISTANT, ""),
        ("u", MessageType.TOOL, "5"),
        ("a", MessageType.ASSISTANT, "The answer is 5"),
        ("u", MessageType.ASSISTANT, "fine"),
        ("a", MessageType.ASSISTANT, "done"),
    ]
    assert m[0].tool_calls == (call("c1"),) and m[0].receiver == "u"
    assert [(r.call_id, r.content, r.is_error) for r in m[1].tool_responses] == [("c1", "5", False)]
    name, first, offered = done.io.proposed[0]
    assert name == "a"
    assert offered == [
        {
            "type": "function",
            "function": {"name": "calculator", "description": "A simple calculator", "parameters": PARAMS},
        }
    ]
    # The caller's next request: the proposal as an assistant message with no name and content null, then the
    # result unrolled into one `tool` message per call.
    _, second, _ = done.io.proposed[1]
    assert second[len(first) :] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": '{"a": 2, "b": 3}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "5"},
    ]
    assert ("tools", "u", [("calculator", '{"a": 2, "b": 3}')]) in done.io.log
    assert "maximum consecutive auto-replies of 'u'" in done.reason


async def test_a_call_of_a_function_the_executor_lacks_is_autogens_error_and_the_run_goes_on() -> None:
    done = await run(
        pair(mcar=1), proposals=[calls(call("c1", "nope", "{}")), ModelReply("sorry")], tools=TOOLS, results={}
    )
    tool_message = done.io.messages[1]
    assert [(r.content, r.is_error) for r in tool_message.tool_responses] == [("Error: Function nope not found.", True)]
    assert not [e for e in done.io.log if e[0] == "tools"], "nothing to run: the IO is not asked"
    assert done.io.said()[-1] == ("a", "sorry")


async def test_parallel_calls_are_one_tool_message_in_call_order() -> None:
    both = calls(call("c1"), call("c2", "search", '{"q": "x"}'))
    graph = pair(mcar=1, tools=[7, 8])
    done = await run(graph, proposals=[both, ModelReply("ok")], tools=TOOLS, results={"calculator": "5", "search": "6"})
    tool_message = done.io.messages[1]
    assert tool_message.content == "5\n\n6"
    assert [r.call_id for r in tool_message.tool_responses] == ["c1", "c2"]
    assert [e for e in done.io.log if e[0] == "tools"] == [
        ("tools", "u", [("calculator", '{"a": 2, "b": 3}'), ("search", '{"q": "x"}')])
    ]


async def test_a_persons_text_skips_the_calls_and_both_reach_the_model() -> None:
    done = await run(
        pair(mode="ALWAYS"),
        answers=["make it rhyme", "exit"],
        proposals=[calls(call("c1")), ModelReply("ok")],
        tools=TOOLS,
    )
    interrupted = done.io.messages[1]
    assert (interrupted.type, interrupted.content) == (MessageType.USER, "make it rhyme")
    assert [(r.call_id, r.content) for r in interrupted.tool_responses] == [("c1", "USER INTERRUPTED")]
    assert done.io.proposed[1][1][-2:] == [
        {"role": "tool", "tool_call_id": "c1", "content": "USER INTERRUPTED"},
        {"role": "user", "content": "make it rhyme", "name": "u"},
    ]
    assert not [e for e in done.io.log if e[0] == "tools"]
    # The person is asked before the call runs, with AutoGen's usual prompt.
    assert done.io.prompts[0][1].startswith("Replying as u. Provide feedback to a.")


async def test_an_empty_answer_lets_the_call_run() -> None:
    done = await run(
        pair(mode="ALWAYS"),
        answers=["", "exit"],
        proposals=[calls(call("c1")), ModelReply("five")],
        tools=TOOLS,
        results={"calculator": "5"},
    )
    assert done.io.said()[1] == ("u", "5")


async def test_the_tool_reply_counts_as_an_auto_reply() -> None:
    # mcar 0: the executor gives no auto-reply at all, so the call never runs.
    done = await run(pair(mcar=0), proposals=[calls(call("c1"))], tools=TOOLS)
    assert [s for s, _ in done.io.said()] == ["a"]
    assert not [e for e in done.io.log if e[0] == "tools"]


async def test_with_max_turns_the_tool_reply_is_the_initiators_next_turn() -> None:
    one = await run(pair(max_turns=1), proposals=[calls(call("c1"))], tools=TOOLS)
    assert [s for s, _ in one.io.said()] == ["a"]
    two = await run(
        pair(max_turns=2), proposals=[calls(call("c1")), ModelReply("t2")], tools=TOOLS, results={"calculator": "2"}
    )
    assert two.io.said() == [("a", ""), ("u", "2"), ("a", "t2")]


async def test_the_callers_termination_check_reads_the_tool_result() -> None:
    done = await run(pair(), proposals=[calls(call("c1"))], tools=TOOLS, results={"calculator": "TERMINATE"})
    assert done.io.said()[-1] == ("u", "TERMINATE")
    assert "termination message received by 'a'" in done.reason


async def test_a_model_offered_no_tools_is_asked_as_before() -> None:
    """An edge without tools: the plain model call, not a proposal."""
    done = await run(pair(mcar=1, tools=[]), replies=["hello", "bye"])
    assert done.io.proposed == []
    assert done.io.said() == [("a", "hello"), ("u", "fine"), ("a", "bye")]


async def test_real_flow_09_person_answers_every_turn() -> None:
    """Agentok's flow 09 (User ALWAYS executes Tavily, the Assistant proposes it, max_turns 5), as the semantics
    document records it: the person is asked before each of the User's turns; an empty answer runs the call."""
    search = ToolDef("172278707085517", "search", "Search the web", {"type": "object", "properties": {}})
    done = await run(
        real_flow("09"),
        "Write a poem about today's news",
        answers=["", "", "make it rhyme", ""],
        proposals=[
            calls(call("c1", "search", '{"question": "news"}')),
            ModelReply("Here is a poem"),
            ModelReply("A second poem"),
            ModelReply("A rhyming poem"),
            ModelReply("The last poem"),
        ],
        tools={search.id: search},
        results={"search": "{'results': []}"},
    )
    assert [s for s, _ in done.io.said()] == ["Assistant", *["User", "Assistant"] * 4]
    assert done.io.said()[1] == ("User", "{'results': []}")
    assert done.io.said()[5] == ("User", "make it rhyme")
    assert len(done.io.prompts) == 4
    assert done.reason == "maximum turns (5) reached"


async def test_only_members_that_run_the_calls_may_speak_next() -> None:
    """AutoGen's func_call_filter: one eligible member speaks without selection; several are chosen among,
    round robin continuing from the last speaker."""
    spec = parse_flow(
        flow("u", [agent("u", "x"), agent("a", "y"), agent("b", "z")], [converse("u", "a"), converse("u", "b")])
    )
    u, a, b = (spec.agent(n) for n in ("u", "a", "b"))
    io, model = ScriptedIO(), ScriptedModel()

    async def pick(method: SpeakerSelection, eligible: list[Any]) -> str:
        members = [u, a, b]
        chosen = await select_speaker(
            method, members, a, io=io, complete=model, manager=a, messages=[], eligible=eligible
        )
        return chosen.name

    assert await pick(SpeakerSelection.AUTO, [u]) == "u"
    assert await pick(SpeakerSelection.ROUND_ROBIN, [u, b]) == "b"
    assert await pick(SpeakerSelection.ROUND_ROBIN, [u]) == "u"
    assert model.calls == [], "no selection model call for a single eligible member"
