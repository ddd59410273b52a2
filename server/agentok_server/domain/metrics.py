"""What the domain and the engine report about their work, for an operator's metrics: a port like the storage
ports, declared here and filled in by the composition root (app.py hands in transport/metrics.py's
Prometheus implementation). The domain never imports a metrics library; tests get NO_OBSERVER.

Reports are plain calls that return at once and never raise: reporting must not change what a run does.
This module imports nothing of the project's, so the engine (which the domain's ports import) can use it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class RunOutcome(StrEnum):
    """How a run's execution on this replica ended."""

    COMPLETED = "completed"  # the conversation ended (the chat is completed)
    LIMIT = "limit"  # a budget or an unanswered question's timeout ended it (the chat is completed)
    ERROR = "error"  # it failed: a model call, a replay that no longer matches, a bug (the chat is error)
    # Stopped here: cancelled, deleted, its lease lost (taken over elsewhere), or the replica shut down (it
    # resumes from its journal elsewhere or after the restart, and is then counted as started again).
    STOPPED = "stopped"


class ModelCallOutcome(StrEnum):
    OK = "ok"
    NOT_ALLOWED = "not_allowed"  # the egress policy refused the endpoint
    FAILED = "failed"  # 429 / 5xx after every attempt
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"  # any other 4xx, or a redirect
    MALFORMED = "malformed"  # a 2xx whose body is not a chat completion
    CANCELLED = "cancelled"  # the run was stopped during the call
    ERROR = "error"  # an unexpected failure (see the server's log)


@dataclass(frozen=True)
class ModelCall:
    """One model call as a run sees it: every attempt included."""

    seconds: float
    outcome: ModelCallOutcome
    retries: int  # attempts after the first
    # From the provider's `usage`, when it sent one (OpenAI does; some compatible servers do not).
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    # The model asked for (a flow's llm_config may name any: bounded where it becomes a label).
    model: str = ""


class Observer(Protocol):
    def run_started(self, *, resumed: bool) -> None:
        """A run began executing here: a new one (SendMessage), or one rebuilt from its journal."""
        ...

    def run_ended(self, outcome: RunOutcome) -> None: ...

    def lease_taken_over(self) -> None:
        """This replica obtained a run's lease and rebuilds the run (at start-up, or its holder died)."""
        ...

    def key_looked_up(self, *, cached: bool) -> None:
        """An API key was checked: from the key cache, or from the database."""
        ...

    def model_called(self, call: ModelCall) -> None: ...


class NoObserver:
    """Reports nowhere: unit tests, and the offline CLI."""

    def run_started(self, *, resumed: bool) -> None:
        pass

    def run_ended(self, outcome: RunOutcome) -> None:
        pass

    def lease_taken_over(self) -> None:
        pass

    def key_looked_up(self, *, cached: bool) -> None:
        pass

    def model_called(self, call: ModelCall) -> None:
        pass


NO_OBSERVER: Observer = NoObserver()
