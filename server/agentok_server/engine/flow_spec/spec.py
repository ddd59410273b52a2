"""What the parser makes of a flow and the engine runs: the agents, the chats they start, groups, nested chats."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .autogen_defaults import DEFAULT_SUMMARY_PROMPT


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
class ToolBinding:
    """One tool an edge binds, as Agentok's codegen binds it (`register_function(f, caller=<edge target>,
    executor=<edge source>)`): the caller's model requests offer it, the executor runs its calls."""

    tool_id: str
    # Agent node ids; None where the edge's end is no agent (the binding binds nothing, the id is still checked).
    caller: str | None
    executor: str | None
    path: str  # flow.edges[i].data.tools[j], for errors naming it
    edge_id: str


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
    tools: tuple[ToolBinding, ...] = ()

    @property
    def tool_ids(self) -> list[str]:
        """The ids of the tools the flow binds, each once, in edge order."""
        return list(dict.fromkeys(b.tool_id for b in self.tools))

    def agent(self, node_id: str) -> AgentSpec:
        return self.agents[node_id]

    @property
    def chat(self) -> ConverseSpec:
        """The run's first chat: the run's first message goes from its initiator to its recipient."""
        if self.chats:
            return self.chats[0]
        return self.nested[self.initiator][0]
