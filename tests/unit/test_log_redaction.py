"""Envoy's log lines lose their credentials (edge/log_redaction.py): the lines below are the shapes Envoy 1.40
prints at debug and trace level, taken from a real envoy.log."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentok_server.edge.envoy_config import render_envoy_config
from agentok_server.edge.envoy_process import admin_socket_path
from agentok_server.edge.log_redaction import LogRedactor

KEY = "atk_Z-RTfzEGKwI22hSyWsK-jdJgKzjzGzkOn-SYqWJ0HC8"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJkZWZhdWx0In0.c2lnbmF0dXJlLXBhcnQtX18"
CHECK_SECRET = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "line",
    [
        f"'x-api-key', '{KEY}'",
        f"'authorization', 'Bearer {JWT}'",
        f"'authorization', 'Basic {CHECK_SECRET}'",
        f"'x-agentok-check-secret', '{CHECK_SECRET}'",
        f"'x-agentok-identity', 'v1.default.1767000000.{CHECK_SECRET}'",
        f"'x-jwt-payload', '{JWT.split('.')[1]}'",
        f'[trace][http] [codec_impl.cc:533] [Tags: "ConnectionId":"3"] completed header: key=X-API-KEY value={KEY}',
        f"[trace][http] completed header: key=Authorization value=bearer {CHECK_SECRET}",
        f"[trace][ext_authz] [ext_authz.cc:834] 'x-agentok-identity':'{CHECK_SECRET}'",
        f"[debug][filter] [local_ratelimit.cc:186] populate descriptor: api_key={CHECK_SECRET}",
        f"[debug][filter] populate descriptor: bearer=Bearer {CHECK_SECRET}",
        f'headers {{ key: "x-api-key" value: "{KEY}" }} headers {{ key: ":path" value: "/chats" }}',
        f"[debug][jwt] [authenticator.cc:193] agentok: Parse Jwt {JWT}",
        f"GET /chats?token={JWT}&key={KEY} HTTP/1.1",
        f"X-Api-Key: {CHECK_SECRET}",
        f"a line that just happens to hold {CHECK_SECRET}",
    ],
)
def test_no_credential_survives(line: str) -> None:
    redacted = LogRedactor([CHECK_SECRET]).line(line)
    assert KEY not in redacted and KEY.removeprefix("atk_") not in redacted
    assert CHECK_SECRET not in redacted
    for part in JWT.split("."):
        assert part not in redacted
    assert "[redacted]" in redacted


@pytest.mark.parametrize(
    "line",
    [
        "[info][main] [server.cc:547]   request header map: 648 bytes: :authority,:method,:path,authorization",
        "[debug][ext_authz] calling the authorization server for /chats",
        "':path', '/chats'",
        '      value_prefix: "Bearer "',
    ],
)
def test_ordinary_lines_are_left_as_they_are(line: str) -> None:
    assert LogRedactor([CHECK_SECRET]).line(line) == line


def test_bytes_that_are_not_utf8_pass_through() -> None:
    raw = b"\xff\xfe 'x-api-key', '" + KEY.encode() + b"'\n"
    out = LogRedactor().line_bytes(raw)
    assert out.startswith(b"\xff\xfe 'x-api-key', ") and out.endswith(b"\n") and KEY.encode() not in out


def test_envoys_admin_is_a_private_unix_socket_never_a_tcp_port(tmp_path: Path) -> None:
    socket_path = admin_socket_path(tmp_path / "envoy")
    assert socket_path == (tmp_path / "envoy").resolve() / "admin.sock"
    config = render_envoy_config(
        listen_host="127.0.0.1",
        listen_port=8080,
        admin_socket=socket_path,
        upstream_host="127.0.0.1",
        upstream_port=50051,
        authz_port=50052,
        auth=False,
    )
    admin = config[config.index("\nadmin:") : config.index("\nstatic_resources:")]
    assert f'pipe: {{path: "{socket_path}", mode: 0600}}' in admin
    assert "socket_address" not in admin and "port_value" not in admin


def test_a_work_dir_too_long_for_a_socket_path_gets_a_short_private_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "envoy"
    socket_path = admin_socket_path(deep)
    try:
        assert len(bytes(socket_path)) <= 107 and socket_path.name == "admin.sock"
        assert (socket_path.parent.stat().st_mode & 0o777) == 0o700
        assert "over the 107" in caplog.text and str(socket_path) in caplog.text
    finally:
        socket_path.parent.rmdir()
    with pytest.raises(ValueError, match="107 bytes"):
        render_envoy_config(
            listen_host="127.0.0.1", listen_port=8080, admin_socket=deep / "admin.sock",
            upstream_host="127.0.0.1", upstream_port=50051, authz_port=50052, auth=False,
        )
