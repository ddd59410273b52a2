"""The egress policy (engine/egress.py): which URLs a tenant may make the server call, and how the call is made.

Names are resolved by a fake resolver (no DNS in unit tests); the requests that must go out go to the fake
model server on a real loopback socket, under names only the fake resolver knows, so a request that arrives
proves it was sent to the address the policy checked.

One file, past 400 lines, on purpose: every refusal and every allowed path of one policy, read side by side,
is how a reviewer checks that nothing the policy promises is left untested."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import pytest

from agentok_server.domain.errors import InvalidArgument
from agentok_server.domain.flow_rules import parse_runnable
from agentok_server.engine import egress, egress_client
from agentok_server.engine.egress import EgressPolicy, EgressRefused
from agentok_server.engine.egress_client import EgressClient
from agentok_server.engine.llm import Endpoint, LlmClient, LlmError

from ..support.api import unique_model
from ..support.fake_llm import FakeLlmServer

HINT = "an operator can allow"


class FakeDns:
    """name -> addresses; anything else does not resolve (as the system resolver says it)."""

    def __init__(self, names: dict[str, list[str]] | None = None) -> None:
        self.names = dict(names or {})
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.names[host]


def policy(allowed: str = "", *, dns: FakeDns | None = None, server_urls: Sequence[str] = ()) -> EgressPolicy:
    return EgressPolicy(allowed, server_urls=server_urls, resolver=dns or FakeDns())


def refused(url: str, pol: EgressPolicy | None = None) -> str:
    with pytest.raises(EgressRefused) as info:
        asyncio.run((pol or policy()).check_url(url))
    return str(info.value)


def allowed(url: str, pol: EgressPolicy | None = None) -> egress.Target:
    return asyncio.run((pol or policy()).check_url(url))


# --- addresses -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.255.0.9", "a loopback address"),
        ("[::1]", "a loopback address"),
        ("10.1.2.3", "a private (RFC 1918) address"),
        ("172.16.0.1", "a private (RFC 1918) address"),
        ("172.31.255.254", "a private (RFC 1918) address"),
        ("192.168.1.1", "a private (RFC 1918) address"),
        ("[fc00::1]", "a private (unique local) address"),
        ("[fd12:3456::1]", "a private (unique local) address"),
        ("169.254.1.1", "a link-local address"),
        ("[fe80::1]", "a link-local address"),
        ("100.64.0.1", "a carrier-grade NAT (shared) address"),
        ("100.127.255.254", "a carrier-grade NAT (shared) address"),
        ("224.0.0.1", "a multicast address"),
        ("239.255.255.250", "a multicast address"),
        ("[ff02::1]", "a multicast address"),
        ("0.0.0.0", "the unspecified address"),
        ("[::]", "the unspecified address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "a reserved address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("169.254.170.2", "a cloud metadata address"),
        ("[fd00:ec2::254]", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("168.63.129.16", "a cloud metadata address"),  # Azure's wire server sits in public space
        ("192.0.2.10", "not publicly routable"),  # documentation
        ("198.18.0.1", "not publicly routable"),  # benchmarking
        ("0.1.2.3", "not publicly routable"),  # "this network"
        # IPv6 that reaches IPv4: judged by the IPv4 address inside.
        ("[::ffff:127.0.0.1]", "a form of 127.0.0.1, a loopback address"),
        ("[::ffff:10.0.0.1]", "a form of 10.0.0.1, a private (RFC 1918) address"),
        ("[::ffff:169.254.169.254]", "a cloud metadata address"),
        ("[2002:7f00:1::]", "a form of 127.0.0.1, a loopback address"),  # 6to4
        ("[64:ff9b::a9fe:a9fe]", "a form of 169.254.169.254, a cloud metadata address"),  # NAT64
        ("[::127.0.0.1]", "a form of 127.0.0.1, a loopback address"),  # IPv4-compatible
        ("[2001:0::1]", "not publicly routable"),  # Teredo
    ],
)
def test_a_non_public_address_is_refused_saying_what_it_is(address: str, why: str) -> None:
    message = refused(f"http://{address}:8080/v1")
    assert why in message and f"{HINT} " in message and "AGENTOK_EGRESS_ALLOWED_HOSTS" in message


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "[2606:4700:4700::1111]", "[::ffff:8.8.8.8]", "[64:ff9b::808:808]"]
)
def test_a_public_address_is_allowed_without_dns(address: str) -> None:
    dns = FakeDns()
    target = allowed(f"https://{address}/v1", policy(dns=dns))
    assert dns.asked == []  # a literal address needs no resolver, at CreateFlow or at call time
    assert target.addresses == (str(ipaddress.ip_address(address.strip("[]"))),)
    assert target.url("/chat/completions").endswith("/v1/chat/completions")


# --- the URL itself --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://8.8.8.8/quitquitquit#", "fragment"),  # the issue: '#' drops the /chat/completions suffix
        ("http://8.8.8.8/v1#x", "fragment"),
        ("http://8.8.8.8/logging?level=debug", "query string"),
        ("http://8.8.8.8/v1?", "query string"),
        ("http://user:pw@8.8.8.8/v1", "user name or password"),
        ("http://user@8.8.8.8/v1", "user name or password"),
        ("ftp://8.8.8.8/v1", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("gopher://8.8.8.8:70/_x", "http:// or https://"),
        ("8.8.8.8/v1", "http:// or https://"),
        ("http:/8.8.8.8/v1", "http:// or https://"),
        ("http://8.8.8.8\\@127.0.0.1/", "backslash"),
        (" http://8.8.8.8/v1", "spaces or control characters"),
        ("http://8.8.8.8/v1\n", "spaces or control characters"),
        ("http://8.8.\t8.8/v1", "spaces or control characters"),
        ("http://8.8.8.8:0/v1", "from 1 to 65535"),
        ("http://8.8.8.8:65536/v1", "from 1 to 65535"),
        ("http://8.8.8.8:http/v1", "from 1 to 65535"),
        ("http:///v1", "no host"),
        ("http://[::1/v1", "IPv6"),
        ("http://[fe80::1%25eth0]/v1", "IPv6"),
        ("http://::1/v1", "brackets"),
        ("http://8.8.8.8/a/../../admin", "'..'"),
        ("http://8.8.8.8/a/%2e%2E/admin", "'..'"),
        ("http://8.8.8.8/./v1", "'.'"),
        ("http://8.8.8.8/a%2fb", "encoded slashes"),
        ("http://8.8.8.8/a%5cb", "encoded slashes"),
        ("http://8.8.8.8/a%00b", "control characters"),
        ("http://8.8.8.8/v1/<script>", "URL characters"),
        ("http://8.8.8.8/v1/é", "URL characters"),
        ("http://bad_host!/v1", "not a valid host name"),
        ("http://127.0.0.%31/", "not a valid host name"),
    ],
)
def test_a_malformed_or_tricky_url_is_refused(url: str, why: str) -> None:
    assert why in refused(url)


@pytest.mark.parametrize(
    ("host", "meant"),
    [
        ("2130706433", "127.0.0.1"),  # decimal
        ("0x7f.1", "127.0.0.1"),  # hex
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("134744072", "8.8.8.8"),  # even a public address: only ever a way round a check
    ],
)
def test_ipv4_in_a_non_canonical_form_is_refused_naming_the_address(host: str, meant: str) -> None:
    message = refused(f"http://{host}:8080/v1")
    assert f"the IPv4 address {meant} in a non-canonical form" in message


def test_a_numeric_top_level_label_is_no_host_name() -> None:
    assert "neither an IPv4 address nor a host name" in refused("http://1.2.3.4.5/v1")
    # Full-width digits and dots fold to ASCII under IDNA: still not a name.
    assert "neither an IPv4 address nor a host name" in refused("http://１２７。０。０。１/v1")


@pytest.mark.parametrize("host", ["localhost", "LocalHost", "localhost.", "api.localhost"])
def test_localhost_is_refused_by_name_without_dns(host: str) -> None:
    dns = FakeDns({"localhost": ["8.8.8.8"], "api.localhost": ["8.8.8.8"]})  # whatever a resolver says
    assert "is a loopback name" in refused(f"http://{host}:11434/v1", policy(dns=dns))
    assert dns.asked == []


def test_hosts_are_lower_cased_and_idna_encoded_and_the_path_cannot_be_escaped() -> None:
    dns = FakeDns({"api.example.com": ["8.8.8.8"], "xn--bcher-kva.example": ["1.1.1.1"]})
    target = allowed("HTTPS://API.Example.COM/V1/", policy(dns=dns))
    assert (target.scheme, target.host, target.port, target.path) == ("https", "api.example.com", 443, "/V1")
    assert target.url("/chat/completions") == "https://api.example.com:443/V1/chat/completions"
    assert allowed("http://Bücher.example/v1", policy(dns=dns)).host == "xn--bcher-kva.example"
    assert dns.asked == ["api.example.com", "xn--bcher-kva.example"]  # resolved as it will be connected to
    with pytest.raises(ValueError):
        target.url("/chat?x=1")  # the server's own suffix is a plain path too


# --- names -----------------------------------------------------------------------------------------------


def test_a_name_that_resolves_to_a_refused_address_is_refused_naming_the_address() -> None:
    dns = FakeDns({"evil.example": ["127.0.0.1"], "mixed.example": ["8.8.8.8", "169.254.169.254"]})
    assert refused("http://evil.example:9901/x", policy(dns=dns)) == (
        "evil.example resolves to 127.0.0.1, a loopback address; "
        "an operator can allow evil.example:9901 with AGENTOK_EGRESS_ALLOWED_HOSTS"
    )
    # Every address counts: a connect could pick any of them.
    assert "resolves to 169.254.169.254, a cloud metadata address" in refused("http://mixed.example/", policy(dns=dns))


def test_a_name_that_does_not_resolve_is_refused() -> None:
    assert "nowhere.example does not resolve (Name or service not known)" in refused("http://nowhere.example/v1")
    assert "does not resolve to any address" in refused(
        "http://empty.example/", policy(dns=FakeDns({"empty.example": []}))
    )


def test_a_resolver_that_hangs_is_a_refusal() -> None:
    async def never(host: str, port: int) -> Sequence[str]:
        await asyncio.Event().wait()
        return []

    pol = EgressPolicy("", resolver=never, resolve_timeout=0.01)
    assert "did not resolve within" in refused("http://slow.example/v1", pol)


def test_a_public_name_is_allowed_with_its_checked_addresses() -> None:
    dns = FakeDns({"api.openai.com": ["162.159.140.245", "2606:4700::6812:7261"]})
    target = allowed("https://api.openai.com/v1", policy(dns=dns))
    assert target.addresses == ("162.159.140.245", "2606:4700::6812:7261")


# --- the allow-list --------------------------------------------------------------------------------------


def test_the_allow_list_by_host_allows_every_port_and_by_host_port_only_that_port() -> None:
    dns = FakeDns({"llm.internal": ["10.0.0.7"]})
    pol = policy("llm.internal, 127.0.0.1:9000 ,[::1]:8080,LOCALHOST:11434", dns=dns)
    assert allowed("http://llm.internal:1234/v1", pol).addresses == ("10.0.0.7",)
    assert allowed("https://LLM.internal/v1", pol).addresses == ("10.0.0.7",)
    assert allowed("http://127.0.0.1:9000/v1", pol).addresses == ("127.0.0.1",)
    assert "127.0.0.1 is a loopback address" in refused("http://127.0.0.1:9001/v1", pol)
    assert allowed("http://[::1]:8080/v1", pol).addresses == ("::1",)
    assert "loopback" in refused("http://[::1]:8081/v1", pol)
    dns.names["localhost"] = ["127.0.0.1"]
    assert allowed("http://localhost:11434/v1", pol).addresses == ("127.0.0.1",)
    # Listing a host lifts the address rules only: the URL rules stay.
    assert "fragment" in refused("http://127.0.0.1:9000/quitquitquit#", pol)


def test_a_listed_name_still_may_not_resolve_to_a_metadata_address_unless_that_address_is_listed() -> None:
    dns = FakeDns({"llm.internal": ["10.0.0.7", "169.254.169.254"]})
    assert "resolves to 169.254.169.254, a cloud metadata address" in refused(
        "http://llm.internal/v1", policy("llm.internal", dns=dns)
    )
    assert allowed("http://169.254.169.254/v1", policy("169.254.169.254:80")).addresses == ("169.254.169.254",)


def test_the_servers_own_model_url_is_always_allowed_and_only_its_host_and_port() -> None:
    pol = policy(server_urls=["http://127.0.0.1:5000/v1"])
    assert allowed("http://127.0.0.1:5000/other/v1", pol).addresses == ("127.0.0.1",)
    assert "loopback" in refused("http://127.0.0.1:9901/v1", pol)
    assert allowed(
        "https://llm.corp:8443/v1",
        policy(server_urls=["https://LLM.corp:8443/v1"], dns=FakeDns({"llm.corp": ["10.9.9.9"]})),
    )


def test_a_server_model_url_that_is_no_url_allows_nothing_and_is_refused_when_called() -> None:
    pol = policy(server_urls=["127.0.0.1:5000/v1"])  # no scheme: it never worked
    assert "http:// or https://" in refused("127.0.0.1:5000/v1", pol)
    assert "loopback" in refused("http://127.0.0.1:5000/v1", pol)


@pytest.mark.parametrize("entry", ["host:0", "host:99999", "host:port", "::1", "[::1", "bad_host!", "0x7f.1"])
def test_a_malformed_allow_list_entry_is_an_operators_error_naming_the_setting(entry: str) -> None:
    with pytest.raises(ValueError, match="AGENTOK_EGRESS_ALLOWED_HOSTS"):
        EgressPolicy(f"ok.example,{entry}")


def test_flow_spec_refuses_a_base_url_that_is_not_a_string() -> None:
    flow: dict[str, Any] = {
        "nodes": [
            {"id": "i", "type": "initializer", "data": {"name": "Init"}},
            {"id": "u", "type": "user", "data": {"name": "User"}},
            {"id": "a", "type": "assistant", "data": {"name": "A"}},
        ],
        "edges": [{"source": "i", "target": "u"}, {"source": "u", "target": "a"}],
        "llm_config": {"base_url": ["http://127.0.0.1:9901/quitquitquit#"]},
    }
    with pytest.raises(InvalidArgument) as info:
        parse_runnable(flow, code_execution=False)
    assert info.value.field_violations[0][0] == "flow.llm_config.base_url"


# --- making the request ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeLlmServer]:
    s = FakeLlmServer().start()
    yield s
    s.stop()


@pytest.fixture()
def dns() -> FakeDns:
    # Names no real resolver knows: a request that arrives went to the address the policy checked.
    return FakeDns({"model.test": ["127.0.0.1"], "rebound.test": ["169.254.169.254"]})


@pytest.fixture()
async def client(server: FakeLlmServer, dns: FakeDns) -> AsyncIterator[EgressClient]:
    c = EgressClient(policy(f"model.test:{server.port}", dns=dns), timeout=10)
    yield c
    await c.aclose()


def _body(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def test_a_request_goes_to_the_checked_address_with_the_names_host_header(
    server: FakeLlmServer, dns: FakeDns, client: EgressClient
) -> None:
    model = unique_model()
    url = f"http://model.test:{server.port}/v1"
    for _ in range(2):
        response = await client.request("POST", url, suffix="/chat/completions", json=_body(model))
        assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "hi ack"
    first, second = server.fake.recorded_for(model)
    assert first.headers["host"] == f"model.test:{server.port}"
    # Resolved once per request, by the policy (the connection itself never asks a resolver).
    assert dns.asked == ["model.test", "model.test"]


async def test_a_name_that_now_resolves_to_a_refused_address_is_refused_at_call_time(
    server: FakeLlmServer, dns: FakeDns, client: EgressClient
) -> None:
    model = unique_model()
    pol = policy(dns=dns)
    dns.names["moved.test"] = ["8.8.8.8"]
    assert (await pol.check_url(f"http://moved.test:{server.port}/v1")).addresses == ("8.8.8.8",)  # at create
    dns.names["moved.test"] = ["127.0.0.1"]  # and by the time a run calls it
    moving = EgressClient(pol, timeout=10)
    try:
        with pytest.raises(EgressRefused, match="resolves to 127.0.0.1, a loopback address"):
            await moving.request(
                "POST", f"http://moved.test:{server.port}/v1", suffix="/chat/completions", json=_body(model)
            )
    finally:
        await moving.aclose()
    assert server.fake.recorded_for(model) == []


async def test_a_connection_to_an_address_the_policy_did_not_check_is_refused(server: FakeLlmServer) -> None:
    backend = egress_client._PinnedBackend()
    with pytest.raises(httpcore.ConnectError, match="not checked by the egress policy"):
        await backend.connect_tcp("127.0.0.1", server.port)


async def test_proxies_from_the_environment_are_not_used(
    server: FakeLlmServer, client: EgressClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: a proxied request would fail
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    model = unique_model()
    response = await client.request(
        "POST", f"http://model.test:{server.port}/v1", suffix="/chat/completions", json=_body(model)
    )
    assert response.status_code == 200 and len(server.fake.recorded_for(model)) == 1


class _Redirect(BaseHTTPRequestHandler):
    target = ""

    def log_message(self, *_: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.send_response(307)
        self.send_header("location", self.target)
        self.send_header("content-length", "0")
        self.end_headers()


@pytest.fixture()
def redirector(server: FakeLlmServer) -> Iterator[int]:
    handler = type("Handler", (_Redirect,), {"target": f"{server.base_url}/chat/completions"})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


async def test_a_redirect_is_not_followed_and_ends_the_model_call(server: FakeLlmServer, redirector: int) -> None:
    model = unique_model()
    llm = LlmClient(timeout=10, attempts=1, egress=policy(f"127.0.0.1:{redirector}"))
    try:
        endpoint = Endpoint(f"http://127.0.0.1:{redirector}/v1", model, None, None, None)
        with pytest.raises(LlmError, match=r"redirected \(HTTP 307\); redirects are not followed"):
            await llm.complete(endpoint, [{"role": "user", "content": "hi"}])
    finally:
        await llm.aclose()
    assert server.fake.recorded_for(model) == []  # where the redirect pointed (allowed or not) was never called


async def test_a_refused_model_endpoint_ends_the_call_without_calling_it(server: FakeLlmServer) -> None:
    model = unique_model()
    llm = LlmClient(timeout=10, attempts=3, egress=policy())
    try:
        for url, why in (
            (server.base_url, "127.0.0.1 is a loopback address"),
            (f"http://user:secret-pw@127.0.0.1:{server.port}/v1", "user name or password"),
        ):
            with pytest.raises(LlmError) as info:
                await llm.complete(Endpoint(url, model, "sk-x", None, None), [{"role": "user", "content": "hi"}])
            assert "is not allowed" in str(info.value) and why in str(info.value)
            assert "secret-pw" not in str(info.value)
    finally:
        await llm.aclose()
    assert server.fake.recorded_for(model) == []
