"""How a group chat's manager picks the next speaker: AutoGen 0.14.1's four methods (docs/autogen-semantics.md §3).

Every input comes from the run's IO or its model: a person picks through `ask_human` (with no agent),
`random` picks through `choose`, `auto` asks the manager's model through `complete`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .flow_spec import AgentSpec, SpeakerSelection
from .replies import Said, wire_name
from .run_io import Complete, FlowIO

MANUAL_LIST = "Please select the next speaker from the following list:"
MANUAL_PROMPT = "Enter the number of the next speaker (enter nothing or `q` to use auto selection): "
MANUAL_INVALID = "Invalid input. Please enter a number between 1 and {n}."
MANUAL_TRIES = 2  # AutoGen gives up ("You have tried 3 times") after the second bad answer

# GroupChat's templates, whitespace included.
ROLE_PLAY = """You are in a role play game. The following roles are available:
                {roles}.
                Read the following conversation.
                Then select the next role from {agentlist} to play. Only return the role."""
SELECT_PROMPT = "Read the above conversation. Then select the next role from {agentlist} to play. Only return the role."
_RULES = """ use these prioritised rules:
    1. If the context refers to themselves as a speaker e.g. "As the..." , choose that speaker's name
    2. If it refers to the "next" speaker name, choose that name
    3. Otherwise, choose the first provided speaker's name in the context
    The names are case-sensitive and should not be abbreviated or changed."""
REASK_MULTIPLE = (
    "You provided more than one name in your text, please return just the name of the next speaker. "
    "To determine the speaker" + _RULES + "\n    Respond with ONLY the name of the speaker and DO NOT provide a reason."
)
REASK_NONE = (
    "You didn't choose a speaker. As a reminder, to determine the speaker"
    + _RULES
    + "\n    The only names that are accepted are {agentlist}."
    "\n    Respond with ONLY the name of the speaker and DO NOT provide a reason."
)
AUTO_ATTEMPTS = 3  # the first question and max_retries_for_selecting_speaker=2 re-asks
CHECKING_AGENT = "checking_agent"
SELECTION_AGENT = "speaker_selection_agent"


async def select_speaker(
    method: SpeakerSelection,
    members: Sequence[AgentSpec],
    last: AgentSpec,
    *,
    io: FlowIO,
    complete: Complete,
    manager: AgentSpec,
    messages: Sequence[Said],
    eligible: Sequence[AgentSpec] | None = None,
) -> AgentSpec:
    """The next speaker after `last`; `messages` are the group's rounds so far. After a message that calls
    tools, only the members that can run all of its calls may speak (AutoGen's `func_call_filter`): one such
    member speaks without any selection; `eligible` holds them."""
    if eligible is not None:
        if len(eligible) == 1:
            return eligible[0]
        if method is SpeakerSelection.ROUND_ROBIN:
            # AutoGen's next_agent over a subset: the first eligible member after `last` in the group's order.
            names = [m.name for m in members]
            start = names.index(last.name) + 1 if last.name in names else 0
            rotated = [*members[start:], *members[:start]]
            return next(m for m in rotated if m in eligible)
        members = eligible
    if method is SpeakerSelection.ROUND_ROBIN:
        return round_robin(members, last)
    if method is SpeakerSelection.RANDOM:
        return await random_speaker(members, io)
    if method is SpeakerSelection.MANUAL:
        return await manual(members, last, io)
    return await auto(members, last, complete=complete, manager=manager, messages=messages)


def round_robin(members: Sequence[AgentSpec], last: AgentSpec) -> AgentSpec:
    """The member after `last` in list order; the first member if `last` is not one."""
    names = [m.name for m in members]
    index = names.index(last.name) if last.name in names else -1
    return members[(index + 1) % len(members)]


async def random_speaker(members: Sequence[AgentSpec], io: FlowIO) -> AgentSpec:
    """Any member, the last speaker included (AutoGen allows repeats by default)."""
    names = [m.name for m in members]
    name = await io.choose(names)
    if name not in names:
        raise ValueError(f"choose returned {name!r}, which is not one of {names}")
    return members[names.index(name)]


async def manual(members: Sequence[AgentSpec], last: AgentSpec, io: FlowIO) -> AgentSpec:
    """A person picks by number; nothing, `q` or two bad answers pick the next member round robin."""
    listing = "\n".join([MANUAL_LIST, *(f"{i}: {m.name}" for i, m in enumerate(members, 1))])
    notice = ""
    for _ in range(MANUAL_TRIES):
        answer = await io.ask_human(None, f"{notice}{listing}\n{MANUAL_PROMPT}")
        if answer in ("", "q"):
            break
        try:
            number = int(answer)
        except ValueError:
            number = 0
        if 0 < number <= len(members):
            return members[number - 1]
        notice = MANUAL_INVALID.format(n=len(members)) + "\n"
    return round_robin(members, last)


async def auto(
    members: Sequence[AgentSpec],
    last: AgentSpec,
    *,
    complete: Complete,
    manager: AgentSpec,
    messages: Sequence[Said],
) -> AgentSpec:
    """The manager's model names the next speaker; an answer naming no member or several is asked again,
    twice at most, and then the next member round robin speaks."""
    agentlist = str([m.name for m in members])
    roles = "\n".join(f"{m.name}: {m.description}".strip() for m in members)
    context: list[dict[str, Any]] = [{"role": "system", "content": ROLE_PLAY.format(roles=roles, agentlist=agentlist)}]
    context += [{"role": "user", "content": s.content, "name": wire_name(s.name)} for s in messages]
    asked: list[dict[str, Any]] = [
        {"role": "system", "content": SELECT_PROMPT.format(agentlist=agentlist), "name": CHECKING_AGENT}
    ]
    for attempt in range(1, AUTO_ATTEMPTS + 1):
        answer = await complete(manager, [*context, *asked])
        named = mentioned(answer.strip(), members)
        if len(named) == 1:
            return next(m for m in members if m.name == named[0])
        if attempt == AUTO_ATTEMPTS:
            break
        reask = REASK_MULTIPLE if named else REASK_NONE.format(agentlist=agentlist)
        asked += [
            {"role": "assistant", "content": answer, "name": SELECTION_AGENT},
            {"role": "system", "content": reask, "name": CHECKING_AGENT},
        ]
    return round_robin(members, last)


def mentioned(content: str, members: Sequence[AgentSpec]) -> list[str]:
    """The members `content` names, as GroupChat._mentioned_agents matches them: whole words, case-sensitive,
    an underscore also matching a space or an escaped underscore."""
    names = []
    for member in members:
        name = member.name
        variants = "|".join(re.escape(v) for v in (name, name.replace("_", " "), name.replace("_", r"\_")))
        if re.search(rf"(?<=\W)({variants})(?=\W)", f" {content} "):
            names.append(name)
    return names
