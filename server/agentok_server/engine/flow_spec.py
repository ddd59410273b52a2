"""Reads Agentok Studio flow JSON (2024 and 2025 schemas) into a FlowSpec the engine can run.

Everything a flow asks for that the engine cannot honour is rejected here, naming the node or edge,
so a chat never starts on a flow that would silently behave differently from Agentok Studio.

How the graph reads (converse edges; the initializer's edge names the first agent):
- first agent -> agent or group node: a chat the first agent starts. Several: sequential chats, in edge
  order (Agentok's codegen ordered them by flow.nodes; the issue asks for edge order). The first chat opens
  with the run's message; the later ones with the edge's `message` or `instructions`, else a person's.
- first agent -> a member of a group it does not start itself: a chat with that group (real flow 04).
- other agent -> group node: that agent joins the group. A group's members: the agents inside it
  (`parentId`, in node order), then the agents joined by their own edge (edge order), then the first
  agent if its own edge joins it: Agentok appends the group's "preceding node" last.
- agent -> nestedchat node -> agents: the agent's nested chats, in edge order (exactly one upstream agent).
- recipient -> first agent, where the first agent has a chat with that recipient: the same chat.
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field
from typing import Any

from ..domain.errors import InvalidArgument
from ..domain.limits import MAX_FLOW_EDGES, MAX_FLOW_NODES

AGENT_TYPES = {"user", "assistant", "conversable"}
GROUP_TYPE = "groupchat"
NESTED_TYPE = "nestedchat"
# Node types the engine does not run, with what a user can do about them.
UNSUPPORTED_TYPES = {
    "gpt_assistant": "GPTAssistantAgent needs the OpenAI Assistants API, which this service does not provide",
    "config": "the 2023 FlowGen 'config' node is not supported: recreate the flow in Agentok Studio",
}
UNSUPPORTED_CLASSES = {
    "RetrieveUserProxyAgent": "retrieval (RAG) agents are not supported",
    "RetrieveAssistantAgent": "retrieval (RAG) agents are not supported",
}
IGNORED_TYPES = {"note"}
DEFAULT_MCAR = 100
# AutoGen's GroupChatManager: its name, system message, and unlimited consecutive auto-replies.
MANAGER_NAME = "chat_manager"
MANAGER_SYSTEM_MESSAGE = "Group chat manager."
MANAGER_MCAR = sys.maxsize
DEFAULT_MAX_ROUND = 10  # GroupChat.max_round
DEFAULT_SUMMARY_PROMPT = "Summarize the takeaway from the conversation. Do not add any introductory phrases."


class HumanInputMode(enum.StrEnum):
    ALWAYS = "ALWAYS"
    TERMINATE = "TERMINATE"
    NEVER = "NEVER"


class SummaryMethod(enum.StrEnum):
    LAST_MSG = "last_msg"
    REFLECTION_WITH_LLM = "reflection_with_llm"


class SpeakerSelection(enum.StrEnum):
    ROUND_ROBIN = "round_robin"
    RANDOM = "random"
    MANUAL = "manual"
    AUTO = "auto"


# AutoGen's per-class defaults (UserProxyAgent asks always, ConversableAgent at termination).
_DEFAULT_MODE = {"user": HumanInputMode.ALWAYS, "conversable": HumanInputMode.TERMINATE}
# AssistantAgent's default prompt ends by asking for TERMINATE, which is what lets a user proxy with
# termination_msg end the chat; ours keeps that and drops AutoGen's coding instructions (no code runs here).
_DEFAULT_SYSTEM = {
    "assistant": "You are a helpful AI assistant. Solve tasks using your language skills. "
    'Reply "TERMINATE" in the end when everything is done.',
    "conversable": "You are a helpful AI Assistant.",
}
# What other agents (the group's speaker selection, introductions) read about an agent with no description:
# AutoGen's UserProxyAgent describes itself by mode, an AssistantAgent with its default system message has a
# fixed description, and any other agent is described by its system message.
_USER_DESCRIPTIONS = {
    HumanInputMode.ALWAYS: "An attentive HUMAN user who can answer questions about the task, and can perform tasks "
    "such as running Python code or inputting command line commands at a Linux terminal and reporting back the "
    "execution results.",
    HumanInputMode.TERMINATE: "A user that can run Python code or input command line commands at a Linux terminal "
    "and report back the execution results.",
    HumanInputMode.NEVER: "A computer terminal that performs no other action than running Python scripts (provided "
    "to it quoted in ```python code blocks), or sh shell scripts (provided to it quoted in ```sh code blocks).",
}
_ASSISTANT_DESCRIPTION = (
    "A helpful and general-purpose AI assistant that has strong language skills, Python skills, "
    "and Linux command line skills."
)


@dataclass(frozen=True)
class LlmConfig:
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class AgentSpec:
    node_id: str
    name: str
    kind: str
    system_message: str
    human_input_mode: HumanInputMode
    max_consecutive_auto_reply: int
    termination_msg: str
    uses_llm: bool
    default_auto_reply: str
    description: str = ""
    # Runs the code blocks of the messages it replies to (enable_code_execution, and the server allows it).
    executes_code: bool = False

    def is_termination_msg(self, content: str) -> bool:
        # Agentok turns a node's termination_msg into a case-insensitive substring check;
        # AutoGen's default (no termination_msg) is content exactly "TERMINATE".
        if self.termination_msg:
            return self.termination_msg.lower() in content.lower()
        return content == "TERMINATE"


@dataclass(frozen=True)
class ConverseSpec:
    """One chat an agent starts: with an agent, or with a group (`recipient` is then the group's node id,
    which is also its manager's)."""

    initiator: str
    recipient: str
    max_turns: int | None
    # The edge's `message` (or `instructions`, which Agentok's UI writes); None: see the chat's caller.
    message: str | None = None
    summary_method: SummaryMethod = SummaryMethod.LAST_MSG
    summary_prompt: str = DEFAULT_SUMMARY_PROMPT


@dataclass(frozen=True)
class GroupSpec:
    node_id: str
    name: str
    members: tuple[str, ...]  # agent node ids, in AutoGen's list order (round robin follows it)
    max_round: int
    speaker_selection: SpeakerSelection
    send_introductions: bool


@dataclass(frozen=True)
class FlowSpec:
    """What a run does. `agents` holds every agent that takes part, and each group's manager (named
    "chat_manager", under the group node's id)."""

    agents: dict[str, AgentSpec]
    initiator: str
    # The chats the first agent starts, in order (several: AutoGen's sequential chats). Empty when the first
    # agent only hosts nested chats: its nested chats then answer the run's first message.
    chats: tuple[ConverseSpec, ...]
    llm: LlmConfig
    warnings: list[str] = field(default_factory=list)
    groups: dict[str, GroupSpec] = field(default_factory=dict)
    # Host agent node id -> the nested chats it runs to make its replies, in order.
    nested: dict[str, tuple[ConverseSpec, ...]] = field(default_factory=dict)

    def agent(self, node_id: str) -> AgentSpec:
        return self.agents[node_id]

    @property
    def chat(self) -> ConverseSpec:
        """The run's first chat: the run's first message goes from its initiator to its recipient."""
        if self.chats:
            return self.chats[0]
        return self.nested[self.initiator][0]


def _fail(field_path: str, description: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid flow: {field_path}: {description}",
        reason="INVALID_FLOW",
        field_violations=[(field_path, description)],
    )


def _node_class(data: dict[str, Any]) -> str:
    return str(data.get("class_type") or data.get("class") or "")


def _int(value: Any, path: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or value < minimum:
        raise _fail(path, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _llm_config(raw: Any, path: str) -> LlmConfig:
    if raw is None:
        return LlmConfig()
    if not isinstance(raw, dict):
        raise _fail(path, "must be an object with model, base_url, api_key, temperature, max_tokens")
    temperature = raw.get("temperature")
    max_tokens = raw.get("max_tokens")
    if temperature is not None and not isinstance(temperature, int | float):
        raise _fail(f"{path}.temperature", "must be a number")
    base_url = raw.get("base_url")
    # Only its type here: whether it may be called is the egress policy's (engine/egress.py), which
    # FlowService applies at CreateFlow and the model client again at every call.
    if base_url is not None and not isinstance(base_url, str):
        raise _fail(f"{path}.base_url", "must be a string (an http:// or https:// URL)")
    return LlmConfig(
        base_url=base_url or None,
        model=raw.get("model") or None,
        api_key=raw.get("api_key") or None,
        temperature=float(temperature) if temperature is not None else None,
        max_tokens=_int(max_tokens, f"{path}.max_tokens", minimum=1) if max_tokens is not None else None,
    )


def _agent(node: dict[str, Any], index: int, code_execution: bool) -> tuple[AgentSpec, list[str]]:
    data = node.get("data") or {}
    path = f"flow.nodes[{index}]"
    kind = node["type"]
    node_id = str(node["id"])
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(f"{path}.data.name", f"agent node {node_id!r} needs a name")
    raw_mode = data.get("human_input_mode")
    if raw_mode is None:
        mode = _DEFAULT_MODE.get(kind, HumanInputMode.NEVER)
    else:
        try:
            mode = HumanInputMode(str(raw_mode).upper())
        except ValueError:
            raise _fail(f"{path}.data.human_input_mode", "must be ALWAYS, TERMINATE or NEVER") from None
    mcar_raw = data.get("max_consecutive_auto_reply")
    mcar = DEFAULT_MCAR if mcar_raw is None else _int(mcar_raw, f"{path}.data.max_consecutive_auto_reply")
    # Agentok writes disable_llm on conversable nodes and enable_llm on user nodes (and the conversable
    # panel writes enable_llm too); a user proxy has no model unless asked, the others have one unless told.
    if kind == "user":
        uses_llm = data.get("enable_llm") is True or data.get("disable_llm") is False
    else:
        uses_llm = data.get("disable_llm") is not True and data.get("enable_llm") is not False
    default_reply = data.get("default_auto_reply")
    if default_reply is not None and not isinstance(default_reply, str):
        raise _fail(f"{path}.data.default_auto_reply", "must be a string")
    system_message = data.get("system_message")
    own_system_message = isinstance(system_message, str) and bool(system_message)
    if not isinstance(system_message, str) or not system_message:
        system_message = _DEFAULT_SYSTEM.get(kind, "")
    description = data.get("description")
    if not isinstance(description, str) or not description.strip():
        if kind == "user":
            description = _USER_DESCRIPTIONS[mode]
        elif kind == "assistant" and not own_system_message:
            description = _ASSISTANT_DESCRIPTION
        else:
            description = system_message
    warnings = []
    executes_code = bool(data.get("enable_code_execution")) and code_execution
    if data.get("enable_code_execution") and not code_execution:
        warnings.append(
            f"node {node_id!r} ({name}): code execution is off on this server; the agent replies as AutoGen "
            "does when a message holds no code to run"
        )
    termination = data.get("termination_msg")
    return (
        AgentSpec(
            node_id=node_id,
            name=name.strip(),
            kind=kind,
            system_message=system_message,
            human_input_mode=mode,
            max_consecutive_auto_reply=mcar,
            termination_msg=termination if isinstance(termination, str) else "",
            uses_llm=uses_llm,
            default_auto_reply=default_reply or "",
            description=description,
            executes_code=executes_code,
        ),
        warnings,
    )


def _optional_str(data: dict[str, Any], key: str, path: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(f"{path}.{key}", "must be a string")
    return value or None


def _max_turns(data: dict[str, Any], path: str) -> int | None:
    raw = data.get("max_turns")
    # Agentok's UI stores 0 / null for "no limit".
    return None if raw in (None, 0) else _int(raw, f"{path}.max_turns", minimum=1)


@dataclass
class _Edge:
    index: int
    id: Any
    source: str
    target: str
    data: dict[str, Any]

    @property
    def path(self) -> str:
        return f"flow.edges[{self.index}]"


class _Graph:
    """The flow's nodes and converse edges, read into chats, groups and nested chats (parse_flow's second half)."""

    def __init__(
        self,
        nodes: list[dict[str, Any]],
        by_id: dict[str, dict[str, Any]],
        agents: dict[str, AgentSpec],
        first: str,
        converse: list[_Edge],
    ) -> None:
        self.nodes = nodes
        self.by_id = by_id
        self.agents = agents
        self.first = first
        self.converse = converse
        self.position = {str(node["id"]): i for i, node in enumerate(nodes)}
        self.warnings: list[str] = []

    def kind(self, node_id: str) -> str:
        if node_id in self.agents:
            return "agent"
        return str(self.by_id[node_id]["type"])

    def label(self, node_id: str) -> str:
        data = self.by_id[node_id].get("data") or {}
        return f"{node_id!r} ({data.get('name') or self.by_id[node_id]['type']})"

    def name(self, node_id: str) -> str:
        return self.agents[node_id].name

    def read(self) -> tuple[tuple[ConverseSpec, ...], dict[str, GroupSpec], dict[str, tuple[ConverseSpec, ...]]]:
        chats: list[_Edge] = []  # the first agent's chats, in edge order
        back_edges: list[_Edge] = []
        joins: dict[str, list[str]] = {}  # group -> agents joined by their own converse edge, in edge order
        hosts: dict[str, list[_Edge]] = {}  # nested chat node -> edges from the agents upstream of it
        nested_edges: dict[str, list[_Edge]] = {}  # nested chat node -> its chats, in edge order
        for edge in self.converse:
            source, target = self.kind(edge.source), self.kind(edge.target)
            if edge.source == edge.target:
                raise _fail(edge.path, f"edge {edge.id!r} joins {self.label(edge.source)} to itself")
            if source == "agent" and target == "agent":
                (chats if edge.source == self.first else back_edges).append(edge)
            elif source == "agent" and target == GROUP_TYPE:
                if edge.source == self.first:
                    chats.append(edge)
                elif edge.source not in joins.setdefault(edge.target, []):
                    joins[edge.target].append(edge.source)
            elif source == "agent" and target == NESTED_TYPE:
                hosts.setdefault(edge.target, []).append(edge)
            elif source == "agent":
                raise _fail(f"{edge.path}.target", f"converse edge to {edge.target!r}, which is not an agent node")
            elif source == NESTED_TYPE and target == "agent":
                nested_edges.setdefault(edge.source, []).append(edge)
            elif source == NESTED_TYPE:
                raise _fail(
                    f"{edge.path}.target",
                    f"nested chat node {self.label(edge.source)} chats with {self.label(edge.target)}: "
                    "a nested chat's recipients must be agents",
                )
            elif source == GROUP_TYPE:
                raise _fail(
                    f"{edge.path}.source",
                    f"edge {edge.id!r} leaves group chat node {self.label(edge.source)}: a group starts no chats; "
                    "its members join it with their own converse edges to it, or sit inside it",
                )
            else:
                raise _fail(f"{edge.path}.source", f"edge {edge.id!r} starts at {self.label(edge.source)}")

        if not chats and self.first not in [e.source for edges in hosts.values() for e in edges]:
            raise _fail("flow.edges", f"agent {self.name(self.first)!r} starts the chat but has no converse edge")
        recipients = [e.target for e in chats if e.target in self.agents]
        chats = self._chats_through_members(chats, joins)
        for edge in back_edges:
            # A back edge between the same pair (Agentok lets users draw both directions) is the same chat.
            if edge.target != self.first or edge.source not in recipients:
                raise _fail(
                    edge.path,
                    f"edge {edge.id!r} from {self.name(edge.source)!r} to {self.name(edge.target)!r}: only "
                    f"{self.name(self.first)!r}, the agent the flow starts with, starts chats (several are run "
                    "one after another); other agents talk in group chats or nested chats",
                )
        groups = self._groups(chats, joins)
        nested = self._nested(hosts, nested_edges)
        specs = tuple(self._chat(edge, k) for k, edge in enumerate(chats))
        self._check_nested_hosts(specs, groups, nested)
        if not specs and nested[self.first][0].message is not None:
            self.warnings.append(
                f"the first nested chat of {self.name(self.first)!r} opens with the message the run is started "
                "with; its message/instructions are not used"
            )
        return specs, groups, nested

    def _group_of(self, agent_id: str, joins: dict[str, list[str]]) -> list[str]:
        """The groups an agent is a member of: inside them (parentId), or joined by its own converse edge."""
        inside = str(self.by_id[agent_id].get("parentId") or self.by_id[agent_id].get("parentNode") or "")
        groups = [g for g, joined in joins.items() if agent_id in joined]
        if inside in self.by_id and self.by_id[inside]["type"] == GROUP_TYPE and inside not in groups:
            groups.insert(0, inside)
        return groups

    def _chats_through_members(self, chats: list[_Edge], joins: dict[str, list[str]]) -> list[_Edge]:
        """A chat from the first agent to a member of a group that the first agent does not start itself is a
        chat with that group (real flow 04: User -> Agent, and Agent -> Group <- User2): the group is what
        the flow draws the first agent talking to, and otherwise nothing would start it. The run says so."""
        direct = {e.target for e in chats if self.kind(e.target) == GROUP_TYPE}
        routed: list[_Edge] = []
        for edge in chats:
            groups = (
                [g for g in self._group_of(edge.target, joins) if g not in direct] if edge.target in self.agents else []
            )
            if len(groups) > 1:
                raise _fail(
                    edge.path,
                    f"edge {edge.id!r}: {self.name(edge.target)!r} is a member of several group chats "
                    f"({', '.join(self.label(g) for g in groups)}): connect {self.name(self.first)!r} to the group "
                    "it talks to",
                )
            if groups:
                self.warnings.append(
                    f"edge {edge.id!r}: {self.name(self.first)!r} converses with {self.name(edge.target)!r}, a member "
                    f"of group chat {self.label(groups[0])}: the chat is with the group, through its manager"
                )
                edge = _Edge(edge.index, edge.id, edge.source, groups[0], edge.data)
            routed.append(edge)
        return routed

    def _chat(self, edge: _Edge, k: int, *, host: str | None = None) -> ConverseSpec:
        """The chat an edge asks for: from the first agent, or (`host`) one of the host's nested chats."""
        data = edge.data
        nested = host is not None
        path = f"{edge.path}.data"
        message = _optional_str(data, "message", path) or _optional_str(data, "instructions", path)
        summary_method = data.get("summary_method") or SummaryMethod.LAST_MSG.value
        try:
            method = SummaryMethod(summary_method)
        except ValueError:
            raise _fail(f"{path}.summary_method", "must be last_msg or reflection_with_llm") from None
        max_turns = _max_turns(data, path)
        initiator, recipient = host or edge.source, edge.target
        if recipient in self.agents:
            if self.name(initiator) == self.name(recipient):
                raise _fail("flow.nodes", f"the two agents are both named {self.name(initiator)!r}: names must differ")
            both = (self.agents[initiator], self.agents[recipient])
            if method is SummaryMethod.REFLECTION_WITH_LLM and not any(a.uses_llm for a in both):
                raise _fail(
                    f"{path}.summary_method",
                    f"reflection_with_llm needs a model, and neither {both[0].name!r} nor {both[1].name!r} has one",
                )
        elif max_turns is not None and max_turns > 1:
            raise _fail(
                f"{path}.max_turns",
                f"a chat with group {self.label(recipient)} is one turn, however many rounds the group runs: "
                "remove max_turns and set the group's max_round",
            )
        if not nested and k == 0 and message is not None:
            self.warnings.append(
                f"edge {edge.id!r}: the first chat opens with the message the run is started with; "
                "its message/instructions are not used"
            )
        if nested and k > 0 and message is None:
            self.warnings.append(
                f"edge {edge.id!r}: this nested chat with {self.name(recipient)!r} has no message or instructions, "
                "so it is skipped, as in AutoGen (only the first nested chat opens with the message it answers)"
            )
        return ConverseSpec(
            initiator=initiator,
            recipient=recipient,
            max_turns=max_turns,
            message=message,
            summary_method=method,
            summary_prompt=_optional_str(data, "summary_prompt", path) or DEFAULT_SUMMARY_PROMPT,
        )

    def _groups(self, chats: list[_Edge], joins: dict[str, list[str]]) -> dict[str, GroupSpec]:
        groups: dict[str, GroupSpec] = {}
        started = [e.target for e in chats]
        # The first agent is a member of a group it converses with by its own edge (Agentok's "preceding node").
        joined_by_first = [e.target for e in self.converse if e.source == self.first and e.target in self.by_id]
        for i, node in enumerate(self.nodes):
            if node["type"] != GROUP_TYPE:
                continue
            group_id, path = str(node["id"]), f"flow.nodes[{i}]"
            if group_id not in started:
                raise _fail(
                    path,
                    f"group chat node {self.label(group_id)} is never started: connect "
                    f"{self.name(self.first)!r}, the agent the flow starts with, to it with a converse edge",
                )
            # Agentok's codegen: the agents inside the group, then the agent that starts it, appended last
            # (so round robin starts with the first one inside). Agents joined to the group by their own
            # converse edge come between the two, in edge order.
            members: list[str] = []
            for child in self.nodes:
                if str(child.get("parentId") or child.get("parentNode") or "") != group_id:
                    continue
                child_id = str(child["id"])
                if child["type"] in IGNORED_TYPES:
                    continue
                if child_id not in self.agents:
                    raise _fail(path, f"group chat node {self.label(group_id)} holds {self.label(child_id)}")
                members.append(child_id)
            for agent_id in [*joins.get(group_id, []), *([self.first] if group_id in joined_by_first else [])]:
                if agent_id not in members:
                    members.append(agent_id)
            if len(members) < 2:
                raise _fail(
                    path, f"group chat node {self.label(group_id)} needs at least two agents (found {len(members)})"
                )
            names = [self.name(m) for m in members]
            for name in names:
                if names.count(name) > 1 or name == MANAGER_NAME:
                    raise _fail(
                        path,
                        f"group chat node {self.label(group_id)}: more than one member is named {name!r}"
                        if name != MANAGER_NAME
                        else f"group chat node {self.label(group_id)}: no member can be named {MANAGER_NAME!r}, "
                        "the group's manager",
                    )
            groups[group_id] = self._group_settings(node, path, tuple(members))
        return groups

    @staticmethod
    def _group_settings(node: dict[str, Any], path: str, members: tuple[str, ...]) -> GroupSpec:
        data = node.get("data") or {}
        raw_round = data.get("max_round")
        max_round = DEFAULT_MAX_ROUND if raw_round is None else _int(raw_round, f"{path}.data.max_round", minimum=1)
        raw_method = data.get("speaker_selection_method")
        try:
            # AutoGen's GroupChat default is "auto"; it reads the method case-insensitively.
            method = SpeakerSelection(str(raw_method or SpeakerSelection.AUTO.value).lower())
        except ValueError:
            raise _fail(
                f"{path}.data.speaker_selection_method", "must be round_robin, random, manual or auto"
            ) from None
        introductions = data.get("send_introductions", False)
        if not isinstance(introductions, bool):
            raise _fail(f"{path}.data.send_introductions", "must be true or false")
        return GroupSpec(
            node_id=str(node["id"]),
            name=str(data.get("name") or "Group"),
            members=members,
            max_round=max_round,
            speaker_selection=method,
            send_introductions=introductions,
        )

    def _nested(
        self, hosts: dict[str, list[_Edge]], nested_edges: dict[str, list[_Edge]]
    ) -> dict[str, tuple[ConverseSpec, ...]]:
        nested: dict[str, tuple[ConverseSpec, ...]] = {}
        for i, node in enumerate(self.nodes):
            if node["type"] != NESTED_TYPE:
                continue
            node_id, path = str(node["id"]), f"flow.nodes[{i}]"
            upstream = hosts.get(node_id, [])
            if len(upstream) != 1:
                raise _fail(
                    path,
                    f"nested chat node {self.label(node_id)} must have exactly one upstream agent, the one whose "
                    f"replies its chats make (found {len(upstream)}): connect one agent to it",
                )
            host = upstream[0].source
            if host in nested:
                raise _fail(path, f"agent {self.name(host)!r} has two nested chat nodes: keep one")
            chats = nested_edges.get(node_id, [])
            if not chats:
                raise _fail(
                    path, f"nested chat node {self.label(node_id)} has no chats: connect it to the agents it chats with"
                )
            nested[host] = tuple(self._chat(edge, k, host=host) for k, edge in enumerate(chats))
        return nested

    def _check_nested_hosts(
        self,
        chats: tuple[ConverseSpec, ...],
        groups: dict[str, GroupSpec],
        nested: dict[str, tuple[ConverseSpec, ...]],
    ) -> None:
        talking = [self.first, *(c.recipient for c in chats), *(m for g in groups.values() for m in g.members)]
        recipients = [c.recipient for queue in nested.values() for c in queue]
        for host in nested:
            if host in recipients:
                raise _fail(
                    "flow.nodes",
                    f"agent {self.name(host)!r} is a recipient of a nested chat and hosts nested chats itself: "
                    "nested chats inside nested chats are not supported",
                )
            if host not in talking:
                raise _fail(
                    "flow.nodes",
                    f"agent {self.name(host)!r} hosts nested chats but takes part in no chat, so they would never run",
                )

    def participants(
        self,
        chats: tuple[ConverseSpec, ...],
        groups: dict[str, GroupSpec],
        nested: dict[str, tuple[ConverseSpec, ...]],
    ) -> dict[str, AgentSpec]:
        ids = [self.first, *(c.recipient for c in chats)]
        ids += [m for g in groups.values() for m in g.members]
        ids += [c.recipient for queue in nested.values() for c in queue]
        agents = {a: self.agents[a] for a in sorted(set(ids) & set(self.agents), key=self.position.__getitem__)}
        for group in groups.values():
            agents[group.node_id] = AgentSpec(
                node_id=group.node_id,
                name=MANAGER_NAME,
                kind=GROUP_TYPE,
                system_message=MANAGER_SYSTEM_MESSAGE,
                human_input_mode=HumanInputMode.NEVER,
                max_consecutive_auto_reply=MANAGER_MCAR,
                termination_msg="",
                uses_llm=True,  # Agentok's codegen always gives the manager the flow's model
                default_auto_reply="",
                description=MANAGER_SYSTEM_MESSAGE,
            )
        return agents


def check_graph_size(flow: Any) -> None:
    """At most MAX_FLOW_NODES nodes and MAX_FLOW_EDGES edges: checked before anything walks the graph."""
    if not isinstance(flow, dict):
        return
    nodes, edges = flow.get("nodes"), flow.get("edges")
    if isinstance(nodes, list) and len(nodes) > MAX_FLOW_NODES:
        raise _fail("flow.nodes", f"has {len(nodes)} nodes; a flow may have at most {MAX_FLOW_NODES}")
    if isinstance(edges, list) and len(edges) > MAX_FLOW_EDGES:
        raise _fail("flow.edges", f"has {len(edges)} edges; a flow may have at most {MAX_FLOW_EDGES}")


def parse_flow(flow: Any, *, code_execution: bool = False) -> FlowSpec:
    """Validates a flow graph; raises InvalidArgument (reason INVALID_FLOW) naming what is wrong.
    `code_execution`: whether this server runs code (AGENTOK_CODE_EXECUTION_ENABLED)."""
    if not isinstance(flow, dict):
        raise _fail("flow", "must be an object with nodes and edges")
    nodes = flow.get("nodes")
    edges = flow.get("edges", [])
    if not isinstance(nodes, list) or not nodes:
        raise _fail("flow.nodes", "must be a non-empty list of nodes")
    if not isinstance(edges, list):
        raise _fail("flow.edges", "must be a list of edges")
    check_graph_size(flow)

    by_id: dict[str, dict[str, Any]] = {}
    for i, node in enumerate(nodes):
        if not isinstance(node, dict) or "id" not in node or not isinstance(node.get("type"), str):
            raise _fail(f"flow.nodes[{i}]", "each node needs an id and a type")
        if not isinstance(node.get("data") or {}, dict):
            raise _fail(f"flow.nodes[{i}].data", "must be an object")
        node_id = str(node["id"])
        if node_id in by_id:
            raise _fail(f"flow.nodes[{i}].id", f"duplicate node id {node_id!r}")
        by_id[node_id] = node

    agents: dict[str, AgentSpec] = {}
    warnings: list[str] = []
    initializers: list[str] = []
    for i, node in enumerate(nodes):
        node_id, kind = str(node["id"]), node["type"]
        data = node.get("data") or {}
        label = f"node {node_id!r} ({data.get('name') or kind})"
        if kind in IGNORED_TYPES or kind in (GROUP_TYPE, NESTED_TYPE):
            continue
        if kind == "initializer":
            initializers.append(node_id)
            continue
        if kind in UNSUPPORTED_TYPES:
            raise _fail(f"flow.nodes[{i}].type", f"{label}: {UNSUPPORTED_TYPES[kind]}")
        if kind not in AGENT_TYPES:
            raise _fail(f"flow.nodes[{i}].type", f"{label}: unknown node type {kind!r}")
        cls = _node_class(data)
        if cls in UNSUPPORTED_CLASSES:
            raise _fail(f"flow.nodes[{i}].data.class", f"{label}: {cls}: {UNSUPPORTED_CLASSES[cls]}")
        agent, agent_warnings = _agent(node, i, code_execution)
        agents[node_id] = agent
        warnings.extend(agent_warnings)

    converse: list[_Edge] = []
    starts: dict[str, list[str]] = {}
    for i, edge in enumerate(edges):
        if not isinstance(edge, dict):
            raise _fail(f"flow.edges[{i}]", "each edge must be an object")
        if not isinstance(edge.get("data") or {}, dict):
            raise _fail(f"flow.edges[{i}].data", "must be an object")
        source, target = str(edge.get("source")), str(edge.get("target"))
        for end, end_id in (("source", source), ("target", target)):
            if end_id not in by_id:
                name = f"edge {edge['id']!r}" if edge.get("id") else f"edge {i}"
                raise _fail(f"flow.edges[{i}].{end}", f"{name} points to no node ({end_id!r})")
        data = edge.get("data") or {}
        if data.get("tools"):
            raise _fail(
                f"flow.edges[{i}].data.tools",
                f"edge {edge.get('id')!r} binds tools {data['tools']}; this service has no tools to bind",
            )
        if data.get("enable_rag"):
            raise _fail(
                f"flow.edges[{i}].data.enable_rag", f"edge {edge.get('id')!r}: retrieval (RAG) is not supported"
            )
        if source in initializers:
            starts.setdefault(source, []).append(target)
            continue
        if by_id[source]["type"] in IGNORED_TYPES or by_id[target]["type"] in IGNORED_TYPES:
            continue
        if edge.get("type") not in (None, "converse"):
            raise _fail(f"flow.edges[{i}].type", f"edge {edge.get('id')!r}: unknown edge type {edge.get('type')!r}")
        converse.append(_Edge(i, edge.get("id"), source, target, data))

    if not initializers:
        raise _fail("flow.nodes", "no initializer node: add one and connect it to the agent that starts the chat")
    if len(initializers) > 1:
        raise _fail("flow.nodes", f"more than one initializer node ({', '.join(initializers)}): keep exactly one")
    first_targets = starts.get(initializers[0], [])
    if len(first_targets) != 1:
        raise _fail(
            "flow.edges",
            f"the initializer {initializers[0]!r} must connect to exactly one agent (found {len(first_targets)})",
        )
    first = first_targets[0]
    if first not in agents:
        raise _fail("flow.edges", f"the initializer connects to {first!r}, which is not an agent node")

    graph = _Graph(nodes, by_id, agents, first, converse)
    chats, groups, nested = graph.read()
    return FlowSpec(
        agents=graph.participants(chats, groups, nested),
        initiator=first,
        chats=chats,
        llm=_llm_config(flow.get("llm_config"), "flow.llm_config"),
        warnings=warnings + graph.warnings,
        groups=groups,
        nested=nested,
    )
