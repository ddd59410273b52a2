"""AutoGen's defaults (autogen 0.14.1, docs/autogen-semantics.md §1 and §3) for what a flow leaves unsaid.

Plain values keyed by node type or human input mode, so the spec types can use them without a cycle."""

from __future__ import annotations

import sys

DEFAULT_MCAR = 100
# AutoGen's GroupChatManager: its name, system message, and unlimited consecutive auto-replies.
MANAGER_NAME = "chat_manager"
MANAGER_SYSTEM_MESSAGE = "Group chat manager."
MANAGER_MCAR = sys.maxsize
DEFAULT_MAX_ROUND = 10  # GroupChat.max_round
DEFAULT_SUMMARY_PROMPT = "Summarize the takeaway from the conversation. Do not add any introductory phrases."

# AutoGen's per-class defaults (UserProxyAgent asks always, ConversableAgent at termination); any other
# node type never asks.
DEFAULT_HUMAN_INPUT_MODE = {"user": "ALWAYS", "conversable": "TERMINATE"}
# AssistantAgent's default prompt ends by asking for TERMINATE, which is what lets a user proxy with
# termination_msg end the chat; ours keeps that and drops AutoGen's coding instructions (no code runs here).
DEFAULT_SYSTEM_MESSAGE = {
    "assistant": "You are a helpful AI assistant. Solve tasks using your language skills. "
    'Reply "TERMINATE" in the end when everything is done.',
    "conversable": "You are a helpful AI Assistant.",
}
# What other agents (the group's speaker selection, introductions) read about an agent with no description:
# AutoGen's UserProxyAgent describes itself by mode, an AssistantAgent with its default system message has a
# fixed description, and any other agent is described by its system message.
USER_DESCRIPTIONS = {
    "ALWAYS": "An attentive HUMAN user who can answer questions about the task, and can perform tasks "
    "such as running Python code or inputting command line commands at a Linux terminal and reporting back the "
    "execution results.",
    "TERMINATE": "A user that can run Python code or input command line commands at a Linux terminal "
    "and report back the execution results.",
    "NEVER": "A computer terminal that performs no other action than running Python scripts (provided "
    "to it quoted in ```python code blocks), or sh shell scripts (provided to it quoted in ```sh code blocks).",
}
ASSISTANT_DESCRIPTION = (
    "A helpful and general-purpose AI assistant that has strong language skills, Python skills, "
    "and Linux command line skills."
)
