"""gRPC server reflection through Envoy, as a generic client uses it: grpcio-reflection's own descriptor
database lists the services, fetches their descriptors, and the test calls methods with messages built from
those descriptors alone (no generated code). It needs a key, as every public call does; the health service
stays out of reach, and out of the descriptions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from ..conftest import Keys
from ..support.api import Grpc, two_agent_flow
from ..support.stack import Stack

PUBLIC = ["agentok.v1.ApiKeyService", "agentok.v1.ChatService", "agentok.v1.FlowService", "agentok.v1.ToolService"]


class _WithKey(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):  # type: ignore[misc]
    """Adds x-api-key to every call: the descriptor database takes a channel, not call metadata."""

    def __init__(self, key: str) -> None:
        self._key = key

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), ("x-api-key", self._key)])

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


@pytest.fixture()
def channel(stack: Stack, keys: Keys) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(stack.edge_target) as plain:
        yield grpc.intercept_channel(plain, _WithKey(keys.alice))


def _call(channel: grpc.Channel, pool: descriptor_pool.DescriptorPool, method: str, **fields: Any) -> Any:
    """Calls `service.Method` with a request built from the reflected descriptor alone."""
    service, name = method.rsplit(".", 1)
    described = pool.FindServiceByName(service).methods_by_name[name]
    request_class = message_factory.GetMessageClass(described.input_type)
    response_class = message_factory.GetMessageClass(described.output_type)
    call = channel.unary_unary(
        f"/{service}/{name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    return call(request_class(**fields), timeout=10)


def test_a_reflection_client_lists_describes_and_calls_the_api_through_envoy(
    channel: grpc.Channel, stack: Stack, keys: Keys
) -> None:
    client = Grpc(stack.edge_target, keys.alice)
    try:
        chat = client.create_chat(client.create_flow(two_agent_flow()))
    finally:
        client.close()
    database = ProtoReflectionDescriptorDatabase(channel)
    assert sorted(database.get_services()) == PUBLIC
    pool = descriptor_pool.DescriptorPool(database)
    get_chat = pool.FindServiceByName("agentok.v1.ChatService").methods_by_name["GetChat"]
    assert (get_chat.input_type.full_name, get_chat.output_type.full_name) == (
        "agentok.v1.GetChatRequest",
        "agentok.v1.GetChatResponse",
    )
    # Field comments and the REST binding come along: the descriptors are the proto files' own.
    assert "chat_id" in get_chat.input_type.fields_by_name

    got = _call(channel, pool, "agentok.v1.ChatService.GetChat", chat_id=chat.id)
    assert (got.chat.id, got.chat.name) == (chat.id, chat.name)
    listed = _call(channel, pool, "agentok.v1.ChatService.ListChats", page_size=100)
    assert chat.id in [c.id for c in listed.chats]


def test_reflection_describes_nothing_internal(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)
    for internal in ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"):
        with pytest.raises(KeyError):
            database.FindFileContainingSymbol(internal)
    with pytest.raises(KeyError):
        database.FindFileByName("grpc/health/v1/health.proto")


def _list_services(channel: grpc.Channel, service: str, metadata: tuple[tuple[str, str], ...] = ()) -> list[str]:
    """One list_services exchange on `service` (v1 and v1alpha share their messages on the wire)."""
    info = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    responses = info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=metadata, timeout=10)
    return sorted(s.name for s in next(responses).list_services_response.service)


def test_both_protocol_versions_are_served(channel: grpc.Channel) -> None:
    # grpcurl and Postman ask v1 first; grpcio-reflection's client speaks v1alpha.
    for service in ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"):
        assert _list_services(channel, service) == PUBLIC


def test_reflection_without_a_credential_is_refused(stack: Stack, keys: Keys) -> None:
    with grpc.insecure_channel(stack.edge_target) as edge, grpc.insecure_channel(stack.server.target) as direct:
        for target in (edge, direct):
            with pytest.raises(grpc.RpcError) as refused:
                ProtoReflectionDescriptorDatabase(target).get_services()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as forged:
            _list_services(edge, "grpc.reflection.v1.ServerReflection", (("x-api-key", "atk_not-a-key"),))
        assert forged.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # On the server's own port an API key is the credential, as for every public call.
        assert _list_services(direct, "grpc.reflection.v1.ServerReflection", (("x-api-key", keys.alice),)) == PUBLIC


def test_the_health_service_stays_unreachable_through_envoy(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
