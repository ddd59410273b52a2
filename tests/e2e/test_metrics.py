"""A replica's Prometheus metrics and Envoy's, scraped as an operator would (curl of /metrics, and Envoy's
/stats/prometheus on its admin socket), before and after a chat run through the real stack: the counts move
by exactly what the test did. Timings are not asserted, only that each histogram counted its calls.

The stack is this module's own (its metrics port set), so no other test's calls or runs move its numbers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentok.v1 import chat_enums_pb2, chat_service_pb2

from ..support.api import Grpc, two_agent_flow, unique_model, with_model
from ..support.fake_llm import FakeLlm, FakeLlmServer, tokens
from ..support.stack import LOOPBACK, ServerProcess, Stack, create_key, free_port
from ..support.waiting import eventually

Sample = tuple[str, frozenset[tuple[str, str]]]
WAITING = chat_enums_pb2.ChatStatus.Value.Value("wait_for_human_input")
COMPLETED = chat_enums_pb2.ChatStatus.Value.Value("completed")


class Scrape(dict[Sample, float]):
    """One scrape: every sample by name and labels."""

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples = cls()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
        return samples

    def get_value(self, name: str, **labels: str) -> float:
        return self.get((name, frozenset(labels.items())), 0.0)

    def __repr__(self) -> str:  # what a failed wait shows: the service's own counts, not the process's
        shown = (
            f"{name}{dict(sorted(labels))}={value:g}"
            for (name, labels), value in self.items()
            if name.startswith("agentok_") and not name.endswith("_created") or name == "grpc_server_handled_total"
        )
        return "; ".join(shown)


def rpc(method: str, **labels: str) -> dict[str, str]:
    service, name = method.lstrip("/").rsplit("/", 1)
    return {"grpc_service": service, "grpc_method": name, "grpc_type": "unary", **labels}


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("metered"), llm_server.base_url, extra_env={"AGENTOK_METRICS_PORT": str(free_port())}
    )
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def key(metered: Stack) -> str:
    return create_key(metered.env, "metrics", "alice")[1]


def scrape(stack: Stack) -> Scrape:
    response = httpx.get(f"http://{LOOPBACK}:{stack.env['AGENTOK_METRICS_PORT']}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return Scrape.parse(response.text)


def envoy_stats(stack: Stack) -> Scrape:
    return Scrape.parse(stack.envoy.admin_get("/stats/prometheus").text)


def grew(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.get_value(name, **labels) - before.get_value(name, **labels)


def test_a_chat_moves_the_replicas_and_envoys_numbers(metered: Stack, key: str, fake_llm: FakeLlm) -> None:
    client = Grpc(metered.edge_target, key)
    model = unique_model("failonce-500")  # its first attempt fails (HTTP 500), the retry answers
    flow = client.create_flow(with_model(two_agent_flow(a={"human_input_mode": "ALWAYS"}), model))
    chat = client.create_chat(flow)
    before, edge_before = scrape(metered), envoy_stats(metered)
    try:
        with pytest.raises(grpc.RpcError) as missing:
            client.chats.GetChat(chat_service_pb2.GetChatRequest(chat_id="no-such-chat"), metadata=client.metadata)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        sent = client.chats.SendMessage(
            chat_service_pb2.SendMessageRequest(chat_id=chat.id, message="task"), metadata=client.metadata
        )
        watch = client.chats.WatchChat(
            chat_service_pb2.WatchChatRequest(chat_id=chat.id, after_seq=sent.chat.last_seq, until_finished=True),
            metadata=client.metadata,
            timeout=30,
        )
        events = iter(watch)
        while next(events).event.status_changed.status != WAITING:
            pass
        waiting = eventually(
            lambda: scrape(metered),
            "the watch stream to be counted",
            accept=lambda s: s.get_value("agentok_watch_streams_open") == 1,
        )
        assert waiting.get_value("agentok_runs_active") == 1
        assert waiting.get_value("agentok_chats_waiting_for_input") == 1

        client.chats.SendInput(
            chat_service_pb2.SendInputRequest(chat_id=chat.id, message="exit"), metadata=client.metadata
        )
        assert [item.event.status_changed.status for item in events if item.event.HasField("status_changed")][
            -1
        ] == COMPLETED
    finally:
        client.close()
    after = eventually(
        lambda: scrape(metered),
        "the stream's end to be counted",
        accept=lambda s: (
            s.get_value("agentok_watch_streams_open") == 0
            and grew(
                before,
                s,
                "grpc_server_handled_total",
                **rpc("/agentok.v1.ChatService/WatchChat", grpc_type="server_stream", grpc_code="OK"),
            )
            == 1
        ),
    )

    # RPCs, by method and code, each timed.
    for method, code in [
        ("/agentok.v1.ChatService/GetChat", "NOT_FOUND"),
        ("/agentok.v1.ChatService/SendMessage", "OK"),
        ("/agentok.v1.ChatService/SendInput", "OK"),
    ]:
        assert grew(before, after, "grpc_server_handled_total", **rpc(method, grpc_code=code)) == 1, method
        assert grew(before, after, "grpc_server_started_total", **rpc(method)) == 1, method
        assert grew(before, after, "grpc_server_handling_seconds_count", **rpc(method)) == 1, method
    assert (
        grew(before, after, "grpc_server_handled_total", **rpc("/agentok.v1.ChatService/GetChat", grpc_code="OK")) == 0
    )

    # The run: one started and completed, nothing left active or waiting.
    assert grew(before, after, "agentok_runs_started_total", how="new") == 1
    assert grew(before, after, "agentok_runs_ended_total", outcome="completed") == 1
    assert grew(before, after, "agentok_runs_ended_total", outcome="error") == 0
    assert after.get_value("agentok_runs_active") == 0
    assert after.get_value("agentok_chats_waiting_for_input") == 0

    # The model: one call, whose first attempt was retried; tokens as the provider's usage counted them.
    answered = fake_llm.requests_for(model)
    assert len(answered) == 2
    assert grew(before, after, "agentok_model_calls_total", outcome="ok") == 1
    assert grew(before, after, "agentok_model_call_retries_total") == 1
    assert grew(before, after, "agentok_model_call_seconds_count") == 1
    prompt = sum(tokens(m["content"]) for m in answered[-1]["messages"])
    assert grew(before, after, "agentok_model_tokens_total", kind="prompt") == prompt > 0
    assert grew(before, after, "agentok_model_tokens_total", kind="completion") == tokens("task ack")

    # Every call through Envoy checked the key once: the key check and the server share the cache.
    lookups = sum(grew(before, after, "agentok_key_lookups_total", cache=c) for c in ("hit", "miss"))
    assert lookups == 4  # GetChat, SendMessage, WatchChat, SendInput
    assert after.get_value("agentok_key_lookups_total", cache="hit") > 0

    # Envoy's own view of the same calls.
    edge_after = envoy_stats(metered)
    public = {"envoy_http_conn_manager_prefix": "public"}
    assert grew(edge_before, edge_after, "envoy_http_downstream_rq_total", **public) == 4
    # (prometheus_client's parser names every counter's sample *_total: Envoy prints envoy_http_ext_authz_ok.)
    assert grew(edge_before, edge_after, "envoy_http_ext_authz_ok_total", **public) == 4
    assert grew(edge_before, edge_after, "envoy_cluster_upstream_rq_total", envoy_cluster_name="agentok_grpc") == 4


def test_a_restart_counts_the_run_it_takes_over(metered: Stack, key: str) -> None:
    client = Grpc(metered.edge_target, key)
    try:
        flow = client.create_flow(two_agent_flow(a={"human_input_mode": "ALWAYS"}, b={"disable_llm": True}))
        chat = client.create_chat(flow)
        client.chats.SendMessage(
            chat_service_pb2.SendMessageRequest(chat_id=chat.id, message="hi"), metadata=client.metadata
        )
        eventually(
            lambda: scrape(metered).get_value("agentok_chats_waiting_for_input"),
            "the run to wait",
            accept=lambda v: v == 1,
        )
        metered.server.stop()
        metered.server.start()
        resumed = scrape(metered)  # a new process: its counters start from 0
        assert resumed.get_value("agentok_lease_takeovers_total") == 1
        assert resumed.get_value("agentok_runs_started_total", how="resumed") == 1
        assert resumed.get_value("agentok_runs_started_total", how="new") == 0
        eventually(
            lambda: scrape(metered).get_value("agentok_chats_waiting_for_input"),
            "the resumed run to wait",
            accept=lambda v: v == 1,
        )
        client.chats.SendInput(
            chat_service_pb2.SendInputRequest(chat_id=chat.id, message="exit"), metadata=client.metadata
        )
        ended = eventually(
            lambda: scrape(metered),
            "the resumed run to end",
            accept=lambda s: s.get_value("agentok_runs_ended_total", outcome="completed") == 1,
        )
        assert ended.get_value("agentok_runs_active") == 0
    finally:
        client.close()


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of the IPv4 sockets listening on `port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_the_metrics_port_listens_on_loopback_only(metered: Stack) -> None:
    assert _listening_addresses(int(metered.env["AGENTOK_METRICS_PORT"])) == {"127.0.0.1"}


def test_a_metrics_port_in_use_stops_the_server_saying_which_setting_moves_it(metered: Stack, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        env = {
            **metered.env,
            "AGENTOK_GRPC_PORT": str(free_port()),
            "AGENTOK_AUTHZ_PORT": str(free_port()),
            "AGENTOK_METRICS_PORT": str(taken.getsockname()[1]),
        }
        server = ServerProcess(env, int(env["AGENTOK_GRPC_PORT"]), tmp_path / "server.log")
        with pytest.raises(RuntimeError, match="server exited"):
            server.start()
    assert server.proc is not None and server.proc.returncode == 1
    assert "AGENTOK_METRICS_PORT" in server.log_path.read_text()
    # Nothing was left listening: the gRPC port is free again.
    with socket.socket() as again:
        again.bind((LOOPBACK, server.port))
