"""The transport's ceiling: a trivial grpc.aio servicer that answers GetChat and ListMessages from memory (no
auth, no database), behind the same Envoy config as the service. What the service gets is read against it.

Its answers are the service's own, captured in the same run (`capture`), so both put the same bytes on the wire.
Run as a process of its own, as the server is: `python bench/ceiling.py PORT DIR`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from agentok.v1 import chat_service_pb2 as cs
from agentok.v1 import chat_service_pb2_grpc

SERVICE = "agentok.v1.ChatService"
# Method -> (request type, response type): what the reads workloads call.
METHODS = {
    "GetChat": (cs.GetChatRequest, cs.GetChatResponse),
    "ListMessages": (cs.ListMessagesRequest, cs.ListMessagesResponse),
}


def capture(edge: str, metadata: tuple[tuple[str, str], ...], chat_id: str, page: int, into: Path) -> None:
    """The service's answers to the reads workloads' calls, one file per method."""
    into.mkdir(parents=True, exist_ok=True)
    with grpc.insecure_channel(edge) as ch:
        stub = chat_service_pb2_grpc.ChatServiceStub(ch)
        got = stub.GetChat(cs.GetChatRequest(chat_id=chat_id), metadata=metadata, timeout=10)
        (into / "GetChat.bin").write_bytes(got.SerializeToString())
        listed = stub.ListMessages(
            cs.ListMessagesRequest(chat_id=chat_id, page_size=page), metadata=metadata, timeout=10
        )
        (into / "ListMessages.bin").write_bytes(listed.SerializeToString())


async def serve(port: int, answers: Path) -> None:
    # The server's own options (metadata limits, pending calls), so only the work differs.
    from agentok_server.app import server_options

    server = grpc.aio.server(options=server_options())
    handlers = {}
    for method, (request_type, response_type) in METHODS.items():
        answer = response_type.FromString((answers / f"{method}.bin").read_bytes())

        async def handle(request: object, context: object, answer: object = answer) -> object:
            return answer

        handlers[method] = grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=request_type.FromString, response_serializer=response_type.SerializeToString
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


@contextmanager
def ceiling_server(port: int, answers: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, __file__, str(port), str(answers)])
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), Path(sys.argv[2])))
