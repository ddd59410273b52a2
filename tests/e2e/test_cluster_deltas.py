"""Message deltas across replicas: a watcher on one replica sees the deltas of a reply another replica's run is
streaming, in order and before the stored message they add up to. Two real replicas on one real PostgreSQL;
keep-alives and lease rounds far apart, so only a NOTIFY can carry the deltas in time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentok.v1 import chat_service_pb2

from ..support.api import Grpc, two_agent_flow, unique_model, with_model
from ..support.cluster import Cluster
from ..support.fake_llm import FakeLlm, FakeLlmServer
from .test_cluster import NOTIFY_DEADLINE, NOTIFY_ONLY

# A reply with a word (one streamed chunk, so one delta) too long for one NOTIFY payload (7999 bytes): split.
LONG = "a " + "ö" * 6000 + " end"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, llm_server: FakeLlmServer) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("delta-cluster"), llm_server.base_url, settings=NOTIFY_ONLY).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.mark.parametrize("reply", ["deltas travel between replicas word by word", LONG], ids=["short", "split"])
def test_a_watcher_on_one_replica_sees_the_deltas_of_a_run_on_the_other(
    cluster: Cluster, fake_llm: FakeLlm, reply: str
) -> None:
    key = cluster.key("erin")
    one, two = (Grpc(r.target, key) for r in cluster.replicas)
    try:
        model = unique_model()
        fake_llm.script(model, [reply])
        fake_llm.hold(model)  # the first word, then nothing until the watcher on the other replica saw it
        flow = with_model(two_agent_flow(a={"human_input_mode": "NEVER"}, edge={"max_turns": 1}), model)
        chat = one.create_chat(one.create_flow(flow))
        request = chat_service_pb2.WatchChatRequest(chat_id=chat.id, include_deltas=True, until_finished=True)
        stream = one.chats.WatchChat(request, metadata=one.metadata, timeout=NOTIFY_DEADLINE)  # on replica 1 ...
        send = chat_service_pb2.SendMessageRequest(chat_id=chat.id, message="hello")
        two.chats.SendMessage(send, metadata=two.metadata, timeout=10)  # ... a run replica 2 executes
        seen = []
        for response in stream:
            event = response.event
            seen.append(event)
            if event.HasField("message_delta") and sum(e.HasField("message_delta") for e in seen) == 1:
                fake_llm.release(model)
        kinds = [e.WhichOneof("kind") for e in seen]
        deltas = "".join(e.message_delta.text for e in seen if e.HasField("message_delta"))
        stored = [e.message_added.content for e in seen if e.HasField("message_added")]
        assert stored == ["hello", reply] and deltas == reply
        last_delta = len(kinds) - 1 - kinds[::-1].index("message_delta")
        assert kinds[last_delta + 1] == "message_added"  # every delta before the message it spells
    finally:
        one.close()
        two.close()
