"""All SQL lives in this package, one module per concern; `Repository` is the one object that implements
every storage port in domain/ports.py (app.py hands it to each service).

Why one class from parts rather than one object per concern: every concern runs on the same held
connections (on SQLite the one writer and the one inline reader of the process), and a step commits a
chat's events, its run journal, its lease and its notification in one transaction. So the parts share one
`Database` and are composed by inheritance; each module holds only its concern's SQL.
"""

from __future__ import annotations

from .base import make_engine
from .chats import ChatQueries
from .flows import FlowQueries
from .idempotency import IdempotencyQueries
from .keys import KeyQueries
from .runs import RunQueries
from .tools import ToolQueries

__all__ = ["Repository", "make_engine"]


class Repository(KeyQueries, FlowQueries, ToolQueries, ChatQueries, RunQueries, IdempotencyQueries):
    """Every storage port over one database (see the module docstring for why one class)."""
