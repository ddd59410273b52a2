"""Envoy's ext_authz service: the edge asks it about every request before routing it."""

from __future__ import annotations

import json

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as authz
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from ..domain.errors import Unauthenticated
from ..domain.keys import KeyService
from .errors import ERROR_DOMAIN


def _deny_body(err: Unauthenticated) -> str:
    # The same shape as the transcoder's gRPC error bodies, so REST clients parse one error format.
    return json.dumps(
        {
            "code": code_pb2.UNAUTHENTICATED,
            "message": err.message,
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": err.reason,
                    "domain": ERROR_DOMAIN,
                }
            ],
        }
    )


class AuthorizationServicer(authz_grpc.AuthorizationServicer):
    def __init__(self, keys: KeyService) -> None:
        self._keys = keys

    async def Check(self, request: authz.CheckRequest, context: grpc.aio.ServicerContext) -> authz.CheckResponse:
        headers = request.attributes.request.http.headers
        try:
            await self._keys.authenticate(headers.get("x-api-key"))
        except Unauthenticated as err:
            return authz.CheckResponse(
                status=status_pb2.Status(code=code_pb2.UNAUTHENTICATED, message=err.message),
                denied_response=authz.DeniedHttpResponse(
                    status=http_status_pb2.HttpStatus(code=http_status_pb2.Unauthorized),
                    headers=[
                        base_pb2.HeaderValueOption(
                            header=base_pb2.HeaderValue(key="content-type", value="application/json")
                        )
                    ],
                    body=_deny_body(err),
                ),
            )
        return authz.CheckResponse(status=status_pb2.Status(code=code_pb2.OK), ok_response=authz.OkHttpResponse())
