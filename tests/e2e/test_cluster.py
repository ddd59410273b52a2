"""Two real replicas on one real PostgreSQL: any replica serves any chat, watchers see runs executed on the
other replica, a run survives the death of the replica executing it, and concurrent writes start one run.

One file, past 400 lines, on purpose: the scenarios share one costly fixture (a PostgreSQL database and two
replicas behind one Envoy), started once per module."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
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
from ..support.envoy_admin import GRPC_CLUSTER, out_of_rotation
from ..support.envoy_admin import served as envoy_served
from ..support.fake_llm import FakeLlm, FakeLlmServer
from ..support.postgres import dsn
from ..support.stack import ServerProcess
from ..support.waiting import eventually

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


# Neither the watch keep-alive (which re-reads storage) nor the lease round (which re-checks for answers
# given elsewhere) comes round within a test's stream deadline: only a NOTIFY can deliver what the other
# replica commits in time, so these tests fail if LISTEN/NOTIFY is broken.
NOTIFY_ONLY = {
    "AGENTOK_WATCH_KEEPALIVE_SECONDS": "600",
    "AGENTOK_LEASE_SECONDS": "1200",
    "AGENTOK_LEASE_RENEW_SECONDS": "600",
}
# Far below NOTIFY_ONLY's periods, far above what a notification takes on a loaded machine.
NOTIFY_DEADLINE = 30.0


@pytest.fixture(scope="module")
def notify_cluster(tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("notify-cluster"), llm_server.base_url, settings=NOTIFY_ONLY).start()
    try:
        yield c
    finally:
        c.stop()


def _clients_of(cluster: Cluster, owner: str = "carol") -> Iterator[tuple[Grpc, Grpc]]:
    key = cluster.key(owner)
    one, two = (Grpc(r.target, key) for r in cluster.replicas)
    try:
        yield one, two
    finally:
        one.close()
        two.close()


@pytest.fixture()
def clients(cluster: Cluster) -> Iterator[tuple[Grpc, Grpc]]:
    yield from _clients_of(cluster)


@pytest.fixture()
def notify_clients(notify_cluster: Cluster) -> Iterator[tuple[Grpc, Grpc]]:
    yield from _clients_of(notify_cluster)


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



def _model_then_fixed_reply(model: str) -> dict[str, Any]:
    """User (fixed reply "A", once) <-> a model agent: hello, <model>, A, <model>, then the run completes."""
    flow = two_agent_flow(
        a={"human_input_mode": "NEVER", "default_auto_reply": "A", "max_consecutive_auto_reply": 1},
        b={"max_consecutive_auto_reply": 5},
    )
    flow["llm_config"] = {"model": model}
    return flow

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
    notify_cluster: Cluster, notify_clients: tuple[Grpc, Grpc]
) -> None:
    cluster, (one, two) = notify_cluster, notify_clients
    chat = one.create_chat(one.create_flow(HITL))
    # The stream's deadline, not a keep-alive or a lease round, is what ends it if no NOTIFY arrives.
    stream = one.watch(chat.id, after_seq=0, timeout=NOTIFY_DEADLINE)  # watching on replica 1 ...
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
    notify_cluster: Cluster, notify_clients: tuple[Grpc, Grpc]
) -> None:
    cluster, (one, two) = notify_cluster, notify_clients
    chat = one.create_chat(one.create_flow(HITL))
    # No keep-alive re-reads storage within the deadline: the catch-up must come from the reconnect.
    stream = one.watch(chat.id, after_seq=0, timeout=NOTIFY_DEADLINE)
    _send(two, chat.id, "hello")
    _events_until(stream, {Status.wait_for_human_input})
    # Cut replica 1's LISTEN connection: what replica 2 commits meanwhile is never notified to it. (Only this
    # cluster's database: the module's other cluster names its replicas alike.)
    assert _sql(
        cluster,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = $1 AND datname = current_database()",
        "agentok replica-1 listener",
    ) == [True]
    req = chat_service_pb2.SendInputRequest(chat_id=chat.id, message="x")
    two.chats.SendInput(req, metadata=two.metadata, timeout=10)  # the run on replica 2 goes on to the end
    rest = _events_until(stream, {Status.completed, Status.error})
    stream.cancel()
    assert [e.seq for e in rest] == list(range(rest[0].seq, rest[-1].seq + 1))
    assert [e.message_added.content for e in rest if e.HasField("message_added")] == ["x", "B"]
    # And replica 1 listens again.
    eventually(
        lambda: (
            _sql(
                cluster,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
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
    fake_llm.wait_for_requests(model, 1)
    # The cancel lands mid model call: replica 2 holds the run, the call is open, its reply not stored.
    assert _lease_holder(cluster, chat.id) == "replica-2"
    assert fake_llm.hangups_for(model) == 0 and _contents(one, chat.id) == ["hello"]
    req = chat_service_pb2.CancelChatRequest(chat_id=chat.id)
    assert one.chats.CancelChat(req, metadata=one.metadata, timeout=10).chat.status == Status.ready
    log = cluster.replicas[1].log_path
    eventually(lambda: re.search(rf"chat {chat.id}: .* stopping its run", log.read_text()) is not None, "the stop")
    fake_llm.wait_for_hangup(model)  # stopped mid call: replica 2 closed the model connection unanswered
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
        chat = one.create_chat(one.create_flow(_model_then_fixed_reply(model)))
        stream = one.watch(chat.id, after_seq=0, timeout=60)
        _send(two, chat.id, "hello")
        fake_llm.wait_for_requests(model, 1)
        # Replica 2 dies holding the run, in the middle of its model call (open, its reply not stored).
        assert _lease_holder(cluster, chat.id) == "replica-2"
        assert fake_llm.hangups_for(model) == 0 and _contents(one, chat.id) == ["hello"]

        cluster.replicas[1].stop(signal.SIGKILL)
        fake_llm.wait_for_hangup(model)  # the call was still open when the replica died

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


def test_a_paused_lease_holder_writes_nothing_once_another_replica_took_its_run_over(
    cluster: Cluster, clients: tuple[Grpc, Grpc], llm_server: FakeLlmServer, fake_llm: FakeLlm
) -> None:
    one, two = clients
    paused = cluster.replicas[1]
    assert paused.proc is not None
    model = unique_model("slow-4")  # every call takes 4 s: the paused replica's reply comes while it sleeps
    chat = one.create_chat(one.create_flow(_model_then_fixed_reply(model)))
    stream = one.watch(chat.id, after_seq=0, timeout=60)
    _send(two, chat.id, "hello")
    fake_llm.wait_for_requests(model, 1)
    assert _lease_holder(cluster, chat.id) == "replica-2" and _contents(one, chat.id) == ["hello"]
    try:
        # Paused, not dead: it keeps its connections and the run's task, and stops renewing the lease.
        _pause_outside_a_transaction(cluster, paused)
        eventually(
            lambda: _lease_holder(cluster, chat.id), "replica 1 to take the run over", accept=lambda h: h == "replica-1"
        )
        fake_llm.wait_for_requests(model, 2)  # replica 1 makes the lost call again
        # The paused replica's reply arrives (unread in its socket) while replica 1's own call is open: it
        # will wake up holding a model reply for a run it no longer holds.
        assert paused.proc is not None
        pid = paused.proc.pid
        eventually(lambda: _unread_bytes(pid, llm_server.port) > 0, "the paused replica's reply")
    finally:
        paused.proc.send_signal(signal.SIGCONT)
    got = two.chats.GetChat(chat_service_pb2.GetChatRequest(chat_id=chat.id), metadata=two.metadata, timeout=10)
    assert got.chat.id == chat.id  # replica 2 is awake and serving again

    events = _events_until(stream, {Status.completed, Status.error})
    stream.cancel()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].status_changed.status == Status.completed
    # Exactly one run's output: replica 2's late reply was neither stored nor journaled. Once the run has
    # ended no replica holds it, so nothing replica 2 might still try can pass the lease fence later.
    stored = _contents(one, chat.id)
    assert stored == ["hello", "hello ack", "A", "A ack"]
    assert [e.message_added.content for e in events if e.HasField("message_added")] == stored
    kinds = _sql(cluster, "SELECT kind FROM run_step WHERE chat_id = $1 ORDER BY run_no, step_no", chat.id)
    assert kinds == ["llm", "say", "say", "llm", "say"], kinds
    assert _sql(cluster, "SELECT last_seq FROM chat WHERE id = $1", chat.id) == [events[-1].seq]
    assert _lease_holder(cluster, chat.id) is None
    assert len(fake_llm.requests_for(model)) == 3  # the paused replica's, made again, and the next one


def _pause_outside_a_transaction(cluster: Cluster, replica: ServerProcess) -> None:
    """SIGSTOPs a replica, at a moment none of its database connections is inside a transaction: one
    paused mid-transaction (a lease round) would hold the chat's row lock and block the takeover forever."""
    assert replica.proc is not None
    for _ in range(50):
        replica.proc.send_signal(signal.SIGSTOP)
        ports = _local_ports(replica.proc.pid)
        open_transactions = _sql(
            cluster,
            "SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY($1::int[]) AND xact_start IS NOT NULL",
            sorted(ports),
        )
        if ports and open_transactions == [0]:
            return
        replica.proc.send_signal(signal.SIGCONT)
    raise AssertionError("the replica was inside a transaction each time it was paused")


def _tcp_sockets(pid: int) -> list[tuple[int, int, int]]:
    """(local port, remote port, unread bytes) of a process's TCP sockets, from Linux's /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    sockets = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            # sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            fields = line.split()
            if fields[9] in inodes:
                local, remote = (int(a.rsplit(":", 1)[1], 16) for a in fields[1:3])
                sockets.append((local, remote, int(fields[4].split(":")[1], 16)))
    return sockets


def _local_ports(pid: int) -> set[int]:
    return {local for local, _, _ in _tcp_sockets(pid)}


def _unread_bytes(pid: int, remote_port: int) -> int:
    """What the process's connections to `remote_port` have received and not read yet."""
    return sum(unread for _, remote, unread in _tcp_sockets(pid) if remote == remote_port)


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


def test_envoy_spreads_requests_over_the_replicas_and_routes_around_a_dead_one(
    tmp_path: Path, llm_server: FakeLlmServer
) -> None:
    cluster = Cluster(tmp_path, llm_server.base_url).start()
    try:
        rest = Rest(cluster.rest_url, cluster.key("erin"))
        chat = rest.create_chat(rest.create_flow(HITL)["id"])
        for _ in range(20):
            assert rest.chat(chat["id"])["id"] == chat["id"]
        served = envoy_served(cluster.envoy, GRPC_CLUSTER)
        assert set(served) == {r.port for r in cluster.replicas} and all(n > 0 for n in served.values()), served

        dead = cluster.replicas[1]
        dead.stop(signal.SIGKILL)
        eventually(lambda: out_of_rotation(cluster.envoy, dead), "Envoy to mark the dead replica's ports unhealthy")
        # The whole seed walk-through, through the one replica left.
        sent = rest.send(chat["id"], "hello")
        rest.wait_status(chat["id"], int(sent["last_seq"]), {"wait_for_human_input"})
        answered = rest.input(chat["id"], "x")
        rest.wait_status(chat["id"], int(answered["last_seq"]), {"completed"})
        assert [m["content"] for m in rest.messages(chat["id"])] == ["hello", "B", "x", "B"]
        # The check endpoint's health route is not reachable from outside: only Envoy's own /healthz is.
        assert httpx.get(f"{cluster.rest_url}/healthz").status_code == 200
        assert httpx.get(f"{cluster.rest_url}/healthz/").status_code == 401
        assert httpx.get(f"{cluster.rest_url}/check/healthz").status_code == 401
    finally:
        cluster.stop()
