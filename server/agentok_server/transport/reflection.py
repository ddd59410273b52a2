"""gRPC server reflection (grpcio-reflection) for the public API, so a generic client (grpcurl, Postman,
grpcio-reflection's own descriptor database) can list and describe agentok.v1.* and call its methods
without the .proto files.

Reflection answers from a descriptor pool holding only the public services' files and what they import:
asked about grpc.health.v1.Health (or any other internal name) it says NOT_FOUND, as it does for a name
that does not exist. It needs a credential like every public call: through Envoy the key check's signed
identity, on the server's port an API key.

Both protocol versions are served: grpc.reflection.v1 (what grpcurl and Postman try first) and v1alpha
(grpcio-reflection's client). Their messages are the same on the wire (v1 is v1alpha renamed), so one
servicer speaks both.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable

import grpc
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.reflection import aio as reflection_aio

from agentok.v1 import api_key_service_pb2, chat_service_pb2, flow_service_pb2, tool_service_pb2

from ..domain.errors import DomainError
from .errors import to_grpc_status
from .rpc import Authenticator

PUBLIC_FILES = (chat_service_pb2, flow_service_pb2, tool_service_pb2, api_key_service_pb2)
PUBLIC_SERVICES = tuple(
    service.full_name for module in PUBLIC_FILES for service in module.DESCRIPTOR.services_by_name.values()
)
V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
METHOD = "ServerReflectionInfo"


def public_pool() -> descriptor_pool.DescriptorPool:
    """A pool of the public services' files and their imports, and nothing else the process has loaded."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: descriptor.FileDescriptor) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:  # a file goes in after what it imports
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)
        added.add(file.name)

    for module in PUBLIC_FILES:
        add(module.DESCRIPTOR)
    return pool


class AuthenticatedReflection(reflection_aio.ReflectionServicer):
    def __init__(self, auth: Authenticator | None, service_names: Iterable[str] = PUBLIC_SERVICES) -> None:
        super().__init__(service_names, pool=public_pool())
        self._auth = auth  # None when auth is switched off (benchmarks only)

    async def ServerReflectionInfo(  # type: ignore[override]
        self,
        request_iterator: AsyncIterable[reflection_pb2.ServerReflectionRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        if self._auth is not None:
            try:
                await self._auth.identify(context)
            except DomainError as err:
                await context.abort_with_status(to_grpc_status(err))
        async for response in super().ServerReflectionInfo(request_iterator, context):
            yield response


def add_reflection(server: grpc.aio.Server, auth: Authenticator | None) -> None:
    """Serves reflection under both protocol names."""
    servicer = AuthenticatedReflection(auth)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    for service in (V1, V1ALPHA):
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {METHOD: handler}),))
