"""Client-side helpers shared by the end-to-end tests: flows to create, REST and gRPC calls, watching."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.protobuf import struct_pb2

from agentok.v1 import (
    chat_pb2,
    chat_service_pb2,
    chat_service_pb2_grpc,
    flow_service_pb2,
    flow_service_pb2_grpc,
)

FLOWS_DIR = Path(__file__).resolve().parents[1] / "data" / "agentok-flows"
# The response header carrying the next page's token on the unversioned list paths (absent on the last page).
NEXT_PAGE_TOKEN = "X-Next-Page-Token"
TERMINAL = {"completed", "error"}


def real_flow(name: str) -> dict[str, Any]:
    """One of the real Agentok Studio flows in tests/data/ (e.g. "01"), as a dict."""
    (path,) = FLOWS_DIR.glob(f"{name}-*.json")
    return json.loads(path.read_text())


def with_model(flow: dict[str, Any], model: str, base_url: str | None = None) -> dict[str, Any]:
    flow = copy.deepcopy(flow)
    flow["llm_config"] = {"model": model, **({"base_url": base_url} if base_url else {})}
    return flow


def unique_model(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def two_agent_flow(
    *,
    a: dict[str, Any] | None = None,
    b: dict[str, Any] | None = None,
    edge: dict[str, Any] | None = None,
    a_type: str = "user",
    b_type: str = "assistant",
) -> dict[str, Any]:
    """initializer -> A -converse-> B, in Agentok's 2024 schema; `a`/`b`/`edge` extend the data."""
    return {
        "nodes": [
            {"id": "init", "type": "initializer", "data": {"class": "Initializer", "name": "Initializer"}},
            {"id": "a", "type": a_type, "data": {"class": "UserProxyAgent", "name": "User", **(a or {})}},
            {
                "id": "b",
                "type": b_type,
                "data": {"class": "AssistantAgent", "name": "Assistant", **(b or {})},
            },
        ],
        "edges": [
            {"id": "e0", "source": "init", "target": "a"},
            {"id": "e1", "source": "a", "target": "b", "type": "converse", "data": edge or {}},
        ],
    }


class Rest:
    """The seed's REST API through Envoy, with one API key: its unversioned paths, which answer in Agentok's
    shapes (the bare chat, bare arrays), except `send_v1`, which reads /v1's SendMessage envelope."""

    def __init__(self, base_url: str, key: str | None) -> None:
        headers = {"X-API-KEY": key} if key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=30)

    def create_flow(self, flow: dict[str, Any], name: str = "flow") -> dict[str, Any]:
        r = self.http.post("/flows", json={"name": name, "flow": flow})
        assert r.status_code == 200, r.text
        return r.json()["flow"]

    def create_chat(self, flow_id: str, name: str = "chat") -> dict[str, Any]:
        r = self.http.post("/chats", json={"name": name, "from_type": "flow", "from_flow": flow_id})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def send(self, chat_id: str, message: str) -> dict[str, Any]:
        """Sends a message; returns the chat (running, its last_seq the stored message's)."""
        r = self.http.post(f"/chats/{chat_id}/messages", json={"message": message})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def send_v1(self, chat_id: str, message: str) -> dict[str, Any]:
        """Sends a message through /v1, whose answer has the stored message beside the chat: {chat, message}."""
        r = self.http.post(f"/v1/chats/{chat_id}/messages", json={"message": message})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def input(self, chat_id: str, message: str) -> dict[str, Any]:
        r = self.http.post(f"/chats/{chat_id}/input", json={"message": message})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def chat(self, chat_id: str) -> dict[str, Any]:
        r = self.http.get(f"/chats/{chat_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def chats(self) -> list[dict[str, Any]]:
        """Every chat of the caller, newest first, following X-Next-Page-Token."""
        return self.every("/chats")

    def messages(self, chat_id: str) -> list[dict[str, Any]]:
        """The chat's whole history, following X-Next-Page-Token."""
        return self.every(f"/chats/{chat_id}/messages", page_size=1000)

    def every(self, path: str, page_size: int = 0) -> list[dict[str, Any]]:
        """All items of an unversioned list path: its pages are bare arrays, the next token is a header."""
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"page_size": page_size} if page_size else {}
        while True:
            r = self.http.get(path, params=params)
            assert r.status_code == 200, r.text
            items += r.json()
            token = r.headers.get(NEXT_PAGE_TOKEN)
            if not token:
                return items
            params = {**params, "page_token": token}

    def wait_status(self, chat_id: str, after_seq: int, statuses: set[str]) -> list[dict[str, Any]]:
        """Reads the chat's SSE stream from `after_seq` until a status in `statuses`; returns the events."""
        events: list[dict[str, Any]] = []
        with self.http.stream("GET", f"/chats/{chat_id}/watch", params={"after_seq": after_seq}) as r:
            assert r.status_code == 200, r.read()
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line.removeprefix("data:"))["event"]
                if "keep_alive" in event:
                    continue
                events.append(event)
                status = event.get("status_changed", {}).get("status")
                if status in statuses or "chat_deleted" in event:
                    return events
        raise AssertionError(f"stream ended before {statuses}: {events}")


class Grpc:
    """Native gRPC stubs over a real channel (through Envoy or straight to the server)."""

    def __init__(self, target: str, key: str | None) -> None:
        self.channel = grpc.insecure_channel(target)
        self.metadata = (("x-api-key", key),) if key else ()
        self.chats = chat_service_pb2_grpc.ChatServiceStub(self.channel)
        self.flows = flow_service_pb2_grpc.FlowServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def create_flow(self, flow: dict[str, Any], name: str = "flow") -> str:
        graph = struct_pb2.Struct()
        graph.update(flow)
        req = flow_service_pb2.CreateFlowRequest(name=name, flow=graph)
        return self.flows.CreateFlow(req, metadata=self.metadata, timeout=10).flow.id

    def create_chat(self, flow_id: str) -> chat_pb2.Chat:
        req = chat_service_pb2.CreateChatRequest(name="c", from_type="flow", from_flow=flow_id)
        return self.chats.CreateChat(req, metadata=self.metadata, timeout=10).chat

    def watch(self, chat_id: str, after_seq: int = 0, timeout: float = 30) -> Any:
        req = chat_service_pb2.WatchChatRequest(chat_id=chat_id, after_seq=after_seq)
        return self.chats.WatchChat(req, metadata=self.metadata, timeout=timeout)


def error_reason(body: dict[str, Any]) -> str:
    for detail in body.get("details", []):
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str(detail["reason"])
    return ""
