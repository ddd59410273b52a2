"""Two real replicas on one real PostgreSQL: any replica serves any chat, watchers see runs executed on the
other replica, a run survives the death of the replica executing it, and concurrent writes start one run."""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import pytest

from agentok.v1 import chat_enums_pb2, chat_pb2, chat_service_pb2

from ..support.api import Grpc, Rest, two_agent_flow, unique_model
from ..support.cluster import Cluster
from ..support.fake_llm import FakeLlm, FakeLlmServer
from ..support.postgres import dsn

Status = chat_enums_pb2.ChatStatus.Value
HITL = two_agent_flow(
    a={"human_input_mode": "ALWAYS"}, b={"disable_llm": True, "default_auto_reply": "B"}, edge={"max_turns": 2}
)
AUTOMATIC = two_agent_flow(
    a={"human_input_mode": "NEVER", "default_auto_reply": "A", "max_consecutive_auto_reply": 1},
    b={"disable_llm": True, "default_auto_reply": "B"},
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"), llm_server.base_url).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture()
def clients(cluster: Cluster) -> Iterator[tuple[Grpc, Grpc]]:
    key = cluster.key("carol")
    one, two = (Grpc(r.target, key) for r in cluster.replicas)
    try:
        yield one, two
    finally:
        one.close()
        two.close()


def _send(client: Grpc, chat_id: str, text: str) -> chat_service_pb2.SendMessageResponse:
    req = chat_service_pb2.SendMessageRequest(chat_id=chat_id, message=text)
    return client.chats.SendMessage(req, metadata=client.metadata, timeout=10)


def _events_until(stream: Any, statuses: set[int]) -> list[chat_pb2.ChatEvent]:
    """Reads a WatchChat stream until a status in `statuses`; keep-alives left out."""
    events = []
    for item in stream:
        if item.event.HasField("keep_alive"):
            continue
        events.append(item.event)
        if item.event.HasField("status_changed") and item.event.status_changed.status in statuses:
            return events
    raise AssertionError(f"the stream ended before {statuses}: {events}")


def _sql(cluster: Cluster, query: str, *args: Any) -> list[Any]:
    """The first column of a query's rows, straight from the cluster's database."""

    async def run() -> list[Any]:
        conn = await asyncpg.connect(dsn(cluster.database_url))
        try:
            return [row[0] for row in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def _lease_holder(cluster: Cluster, chat_id: str) -> str | None:
    (holder,) = _sql(cluster, "SELECT lease_holder FROM chat WHERE id = $1", chat_id)
    return holder  # type: ignore[no-any-return]


def _contents(client: Grpc, chat_id: str) -> list[str]:
    req = chat_service_pb2.ListMessagesRequest(chat_id=chat_id, page_size=1000)
    return [m.content for m in client.chats.ListMessages(req, metadata=client.metadata, timeout=10).messages]


def test_a_chat_created_through_one_replica_is_served_by_the_other(
    cluster: Cluster, clients: tuple[Grpc, Grpc]
) -> None:
    one, two = clients
    chat = one.create_chat(one.create_flow(HITL))
    got = two.chats.GetChat(chat_service_pb2.GetChatRequest(chat_id=chat.id), metadata=two.metadata, timeout=10)
    assert got.chat.id == chat.id and got.chat.status == Status.ready
    listed = two.chats.ListChats(chat_service_pb2.ListChatsRequest(), metadata=two.metadata, timeout=10)
    assert chat.id in [c.id for c in listed.chats]
    # Owners stay apart on every replica.
    other = Grpc(cluster.replicas[1].target, cluster.key("mallory"))
    with pytest.raises(grpc.RpcError) as err:
        other.chats.GetChat(chat_service_pb2.GetChatRequest(chat_id=chat.id), metadata=other.metadata, timeout=10)
    other.close()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_watcher_on_one_replica_follows_a_run_executed_on_the_other(
    cluster: Cluster, clients: tuple[Grpc, Grpc]
) -> None:
    one, two = clients
    chat = one.create_chat(one.create_flow(HITL))
    stream = one.watch(chat.id, after_seq=0)  # watching on replica 1 ...
    _send(two, chat.id, "hello")  # ... a run that replica 2 starts, and so executes
    waiting = _events_until(stream, {Status.wait_for_human_input})
    assert _lease_holder(cluster, chat.id) == "replica-2"
    # The answer goes through replica 1 and reaches the run on replica 2.
    req = chat_service_pb2.SendInputRequest(chat_id=chat.id, message="x")
    one.chats.SendInput(req, metadata=one.metadata, timeout=10)
    rest = _events_until(stream, {Status.completed, Status.error})
    stream.cancel()
    events = waiting + rest
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # in order, none missing, none twice
    assert events[-1].status_changed.status == Status.completed
    said = [e.message_added.content for e in events if e.HasField("message_added")]
    assert said == ["hello", "B", "x", "B"] == _contents(one, chat.id)
    assert _lease_holder(cluster, chat.id) is None  # released when the run ended


def test_a_watcher_catches_up_from_storage_when_its_replica_lost_its_notifications(
    cluster: Cluster, clients: tuple[Grpc, Grpc]
) -> None:
    one, two = clients
    chat = one.create_chat(one.create_flow(HITL))
    stream = one.watch(chat.id, after_seq=0)
    _send(two, chat.id, "hello")
    _events_until(stream, {Status.wait_for_human_input})
    # Cut replica 1's LISTEN connection: what replica 2 commits meanwhile is never notified to it.
    assert _sql(
        cluster,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        "agentok replica-1 listener",
    ) == [True]
    req = chat_service_pb2.SendInputRequest(chat_id=chat.id, message="x")
    two.chats.SendInput(req, metadata=two.metadata, timeout=10)  # the run on replica 2 goes on to the end
    rest = _events_until(stream, {Status.completed, Status.error})
    stream.cancel()
    assert [e.seq for e in rest] == list(range(rest[0].seq, rest[-1].seq + 1))
    assert [e.message_added.content for e in rest if e.HasField("message_added")] == ["x", "B"]
    # And replica 1 listens again.
    _wait_for(
        lambda: (
            _sql(
                cluster,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                "agentok replica-1 listener",
            )
            == [1]
        ),
        "the listener to reconnect",
    )


def test_concurrent_messages_through_both_replicas_start_exactly_one_run(
    cluster: Cluster, clients: tuple[Grpc, Grpc]
) -> None:
    one, two = clients
    flow_id = one.create_flow(AUTOMATIC)
    for _ in range(5):
        chat = one.create_chat(flow_id)
        outcomes = _race(chat.id, (one, "via-1"), (two, "via-2"))
        won = [t for t, o in outcomes.items() if isinstance(o, chat_service_pb2.SendMessageResponse)]
        lost = [o for o in outcomes.values() if isinstance(o, grpc.RpcError)]
        assert len(won) == 1 and len(lost) == 1, outcomes
        assert lost[0].code() == grpc.StatusCode.FAILED_PRECONDITION
        _events_until(one.watch(chat.id), {Status.completed, Status.error})
        assert _contents(two, chat.id) == [won[0], "B", "A", "B"]


def test_cancel_through_one_replica_stops_the_run_on_the_other(
    cluster: Cluster, clients: tuple[Grpc, Grpc], fake_llm: FakeLlm
) -> None:
    one, two = clients
    model = unique_model("slow-20")
    flow = two_agent_flow(a={"human_input_mode": "NEVER"}, edge={"max_turns": 2})
    flow["llm_config"] = {"model": model}
    chat = one.create_chat(one.create_flow(flow))
    _send(two, chat.id, "hello")  # replica 2 runs it, and calls the (slow) model
    _wait_for(lambda: len(fake_llm.requests_for(model)) == 1, "the model call")
    req = chat_service_pb2.CancelChatRequest(chat_id=chat.id)
    assert one.chats.CancelChat(req, metadata=one.metadata, timeout=10).chat.status == Status.ready
    log = cluster.replicas[1].log_path
    _wait_for(lambda: re.search(rf"chat {chat.id}: .* stopping its run", log.read_text()) is not None, "the stop")
    # The chat is free: a new run starts (on replica 1 this time) and nothing of the old one comes back.
    assert _send(one, chat.id, "again").chat.status == Status.running
    assert _contents(two, chat.id)[:2] == ["hello", "The run was cancelled."]


def test_the_other_replica_finishes_a_run_whose_replica_was_killed(
    tmp_path: Path, llm_server: FakeLlmServer, fake_llm: FakeLlm
) -> None:
    cluster = Cluster(tmp_path, llm_server.base_url).start()
    try:
        key = cluster.key("dora")
        one, two = (Grpc(r.target, key) for r in cluster.replicas)
        model = unique_model("slowonce-30")  # the first call hangs: replica 2 dies in it
        flow = two_agent_flow(
            a={"human_input_mode": "NEVER", "default_auto_reply": "A", "max_consecutive_auto_reply": 1},
            b={"max_consecutive_auto_reply": 5},
        )
        flow["llm_config"] = {"model": model}
        chat = one.create_chat(one.create_flow(flow))
        stream = one.watch(chat.id, after_seq=0, timeout=60)
        _send(two, chat.id, "hello")
        _wait_for(lambda: len(fake_llm.requests_for(model)) == 1, "the model call")

        cluster.replicas[1].stop(signal.SIGKILL)

        # Replica 1 takes the run over when the lease lapses, makes the lost call again, and finishes;
        # its watcher, connected throughout, sees every event once, in order.
        events = _events_until(stream, {Status.completed, Status.error})
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert events[-1].status_changed.status == Status.completed
        assert _contents(one, chat.id) == ["hello", "hello ack", "A", "A ack"]
        assert len(fake_llm.requests_for(model)) == 3
        one.close()
        two.close()
    finally:
        cluster.stop()


def _race(chat_id: str, *senders: tuple[Grpc, str]) -> dict[str, Any]:
    """Sends one message per (client, text) at the same moment; returns each response or error by text."""
    barrier = threading.Barrier(len(senders))
    outcomes: dict[str, Any] = {}

    def send(client: Grpc, text: str) -> None:
        barrier.wait()
        try:
            outcomes[text] = _send(client, chat_id, text)
        except grpc.RpcError as err:
            outcomes[text] = err

    threads = [threading.Thread(target=send, args=sender) for sender in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def _wait_for(condition: Any, what: str, timeout: float = 20.0) -> None:
    """Polls a condition another process makes true (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _envoy_hosts(cluster: Cluster, name: str = "agentok_grpc") -> dict[int, dict[str, str]]:
    """Envoy's view of a cluster's hosts, by port: rq_success, health_flags, ..."""
    text = httpx.get(f"http://127.0.0.1:{cluster.envoy.admin_port}/clusters", timeout=5).text
    hosts: dict[int, dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == name and ":" in parts[1]:
            port = int(parts[1].rsplit(":", 1)[1])
            hosts.setdefault(port, {})[parts[2]] = parts[3]
    return hosts


def test_envoy_spreads_requests_over_the_replicas_and_routes_around_a_dead_one(
    tmp_path: Path, llm_server: FakeLlmServer
) -> None:
    cluster = Cluster(tmp_path, llm_server.base_url).start()
    try:
        rest = Rest(cluster.rest_url, cluster.key("erin"))
        chat = rest.create_chat(rest.create_flow(HITL)["id"])
        for _ in range(20):
            assert rest.chat(chat["id"])["id"] == chat["id"]
        served = {port: int(h.get("rq_success", "0")) for port, h in _envoy_hosts(cluster).items()}
        assert set(served) == {r.port for r in cluster.replicas} and all(n > 0 for n in served.values()), served

        dead = cluster.replicas[1]
        dead.stop(signal.SIGKILL)
        dead_authz = int(dead.env["AGENTOK_AUTHZ_PORT"])

        def out_of_rotation() -> bool:
            grpc_flags = _envoy_hosts(cluster)[dead.port].get("health_flags", "")
            authz_flags = _envoy_hosts(cluster, "agentok_authz")[dead_authz].get("health_flags", "")
            return "failed_active_hc" in grpc_flags and "failed_active_hc" in authz_flags

        _wait_for(out_of_rotation, "Envoy to mark the dead replica's ports unhealthy")
        # The whole seed walk-through, through the one replica left.
        sent = rest.send(chat["id"], "hello")
        rest.wait_status(chat["id"], int(sent["chat"]["last_seq"]), {"wait_for_human_input"})
        answered = rest.input(chat["id"], "x")
        rest.wait_status(chat["id"], int(answered["last_seq"]), {"completed"})
        assert [m["content"] for m in rest.messages(chat["id"])] == ["hello", "B", "x", "B"]
        # The check endpoint's health route is not reachable from outside: only Envoy's own /healthz is.
        assert httpx.get(f"{cluster.rest_url}/healthz").status_code == 200
        assert httpx.get(f"{cluster.rest_url}/healthz/").status_code == 401
        assert httpx.get(f"{cluster.rest_url}/check/healthz").status_code == 401
    finally:
        cluster.stop()
