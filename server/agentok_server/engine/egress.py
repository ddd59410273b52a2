"""The egress policy: where a URL that a tenant can influence may lead, and the one way to call it.

Every outgoing request to such a URL (a flow's model endpoint today; HTTP tools later) goes through
`EgressPolicy.check_url` (here) and `egress_client.EgressClient`, so the rules live here and nowhere else:

- Only `http`/`https`, no userinfo, no fragment (a `#` would let a tenant cut off the path the server appends),
  no query string unless the caller allows one, a port in 1-65535, no dot segments, encoded slashes or
  backslashes in the path (the server appends its own path, which must stay the end of the URL). Host names
  are lower-cased and IDNA-encoded; IPv4 written in decimal, octal or hex (`2130706433`, `0x7f.1`) is refused.
- The host must be public: loopback, private (RFC 1918, ULA), link-local, CGNAT, multicast, unspecified,
  reserved and cloud-metadata addresses are refused, also when wrapped in IPv6 (`::ffff:127.0.0.1`, 6to4,
  NAT64), and so are `localhost` and names that resolve to any such address. An operator allows a host
  (`host` or `host:port`) with AGENTOK_EGRESS_ALLOWED_HOSTS; the server's own AGENTOK_LLM_BASE_URL is
  always allowed.
- A name is resolved once per request, every address it resolves to is checked, and the connection is made
  to those checked addresses only (no DNS rebinding between check and connect): `EgressClient` connects
  through a network backend that refuses any address the policy did not hand it for this request. The URL
  keeps the name, so the Host header, SNI and certificate verification are the name's, and pooled
  connections are keyed by name (an IP-keyed pool would let a TLS connection made for one name carry
  another name's request and key). No redirects, no proxies from the environment.

`EgressRefused` carries a sentence a tenant can act on; callers name the field (CreateFlow) or the
endpoint (a run's error).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import idna

log = logging.getLogger(__name__)

SETTING = "AGENTOK_EGRESS_ALLOWED_HOSTS"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# A resolution that takes longer than this is a refusal, not a hung CreateFlow.
RESOLVE_TIMEOUT_SECONDS = 5.0
MAX_URL_LENGTH = 2048

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to (the default asks the system resolver, as a connect would).
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

# Instance-metadata and host-internal endpoints of the clouds. Most sit in ranges refused anyway; they are
# named so the refusal says what they are, and 168.63.129.16 (Azure's wire server) is in public space.
_METADATA = {
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS VPC DNS
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::253",
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
        "168.63.129.16",  # Azure wire server
    )
}
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # DNS64 maps public IPv4 hosts here: judged by the IPv4 inside
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_ULA = ipaddress.IPv6Network("fc00::/7")
_RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# RFC 3986 pchar (unreserved, sub-delims, ':', '@') plus '/' and percent escapes; nothing a parser could
# read as the end of the path.
_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
_QUERY = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*")


class EgressRefused(Exception):
    """The URL may not be called; the message says why, in words a tenant (or their operator) can act on."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where a request goes (`host` as sent, ASCII, no brackets) and the only addresses it
    may connect to (the ones checked)."""

    scheme: str
    host: str
    port: int
    path: str  # without a trailing '/'; the caller's suffix goes after it
    query: str
    addresses: tuple[str, ...]

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def url(self, suffix: str = "") -> str:
        """The URL to request: this target's path, then the server's own `suffix` (a fixed path such as
        "/chat/completions", never a tenant's), so whatever a tenant wrote stays in front of it."""
        if suffix and (not suffix.startswith("/") or "?" in suffix or "#" in suffix):
            raise ValueError(f"suffix {suffix!r} must be a plain path starting with '/'")
        return f"{self.origin}{self.path}{suffix}" + (f"?{self.query}" if self.query else "")


@dataclass(frozen=True)
class ParsedUrl:
    scheme: str
    host: str
    port: int
    path: str
    query: str
    ip: IpAddress | None  # the host, when it is an address literal


def _normalize_host(raw: str) -> tuple[str, IpAddress | None]:
    """(host as sent, its address if it is a literal). Raises EgressRefused for anything else."""
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise EgressRefused(f"host {raw!r} is not a valid IPv6 literal")
        try:
            if "%" in raw:  # a zone id ('[fe80::1%25eth0]') picks an interface: never a tenant's choice
                raise ValueError(raw)
            v6 = ipaddress.IPv6Address(raw[1:-1])
        except ValueError:
            raise EgressRefused(f"host {raw!r} is not a valid IPv6 literal") from None
        return str(v6), v6
    host = raw.lower()
    if host.endswith("."):  # "localhost." is localhost
        host = host[:-1]
    if not host:
        raise EgressRefused("the URL has no host")
    try:
        v4 = ipaddress.IPv4Address(host)
        return str(v4), v4
    except ValueError:
        pass
    try:
        # The C resolver reads these legacy forms as addresses (2130706433, 0x7f.1, 0177.0.0.1, 127.1):
        # a name a resolver turns into an address without DNS is only ever a way round a check.
        meant = socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        pass
    else:
        raise EgressRefused(f"host {raw!r} is the IPv4 address {meant} in a non-canonical form: write {meant}")
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise EgressRefused(f"host {raw!r} is not a valid host name ({exc})") from None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise EgressRefused(f"host {raw!r} is not a valid host name")
    if labels[-1].isdigit():  # no top-level domain is numeric: this is a malformed address
        raise EgressRefused(f"host {raw!r} is neither an IPv4 address nor a host name")
    return host, None


def _split_host_port(netloc: str, default: int | None) -> tuple[str, int | None]:
    """'host', 'host:port', '[v6]', '[v6]:port' -> (host part, port); the port is checked, not the host."""
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = (netloc[: end + 1], netloc[end + 1 :]) if end >= 0 else (netloc, "")
        if rest and not rest.startswith(":"):
            raise EgressRefused(f"{netloc!r} is not a valid host and port")
        port_text = rest[1:] if rest else None
    elif netloc.count(":") == 1:
        host, port_text = netloc.split(":")
    elif ":" in netloc:
        raise EgressRefused(f"{netloc!r}: an IPv6 address must be written in brackets")
    else:
        host, port_text = netloc, None
    if port_text is None:
        return host, default
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise EgressRefused(f"port {port_text!r} must be a number from 1 to 65535")
    return host, int(port_text)


def parse_url(url: object, *, allow_query: bool = False) -> ParsedUrl:
    """The URL's parts, normalized, or EgressRefused saying what is wrong with it. No DNS."""
    if not isinstance(url, str):
        raise EgressRefused("must be a string")
    if len(url) > MAX_URL_LENGTH:
        raise EgressRefused(f"is longer than {MAX_URL_LENGTH} characters")
    # Checked on the raw text: urlsplit drops tabs and newlines and reports an empty fragment or query as
    # none, and WHATWG parsers (browsers, some proxies) read a backslash as a slash.
    if any(c <= " " or c == "\x7f" for c in url):
        raise EgressRefused("must not contain spaces or control characters")
    if "\\" in url:
        raise EgressRefused("must not contain a backslash")
    if "#" in url:
        raise EgressRefused("must not contain a fragment ('#'): the server appends its own path to the URL")
    if "?" in url and not allow_query:
        raise EgressRefused("must not have a query string ('?'): the server appends its own path to the URL")
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        raise EgressRefused("must be an http:// or https:// URL")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL", ...
        raise EgressRefused(f"is not a valid URL ({exc})") from None
    if "@" in parts.netloc:
        raise EgressRefused("must not carry a user name or password ('user:pw@host'): send keys as api_key")
    raw_host, port = _split_host_port(parts.netloc, _DEFAULT_PORTS[scheme])
    assert port is not None
    host, ip = _normalize_host(raw_host)
    path = parts.path
    if not path.isascii() or not _PATH.fullmatch(path):
        raise EgressRefused("the path may hold only URL characters (percent-encode the others)")
    for segment in path.split("/"):
        decoded = unquote(segment)
        if decoded in (".", ".."):
            raise EgressRefused("the path must not contain '.' or '..' segments")
        if any(c in "/\\" or c < " " or c == "\x7f" for c in decoded):
            raise EgressRefused("the path must not contain encoded slashes, backslashes or control characters")
    if not parts.query.isascii() or not _QUERY.fullmatch(parts.query):
        raise EgressRefused("the query may hold only URL characters (percent-encode the others)")
    return ParsedUrl(scheme, host, port, path.rstrip("/"), parts.query, ip)


def _embedded_ipv4(v6: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches through a translation mechanism, if it is one of those."""
    if v6.ipv4_mapped is not None:
        return v6.ipv4_mapped
    if v6.sixtofour is not None:
        return v6.sixtofour
    if v6 in _NAT64:
        return ipaddress.IPv4Address(int(v6) & 0xFFFFFFFF)
    if v6 in _IPV4_COMPATIBLE and int(v6) > 1:  # '::a.b.c.d', deprecated but still routed by some stacks
        return ipaddress.IPv4Address(int(v6) & 0xFFFFFFFF)
    return None


def refusal(ip: IpAddress) -> str | None:
    """Why a request may not reach `ip` (a phrase: "a loopback address"), or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return "a scoped (link-local) address"
    if ip in _METADATA:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            why = refusal(inner)
            return f"a form of {inner}, {why}" if why else None
        if ip in _NAT64_LOCAL:
            return "a local NAT64 address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a carrier-grade NAT (shared) address"
    if isinstance(ip, ipaddress.IPv6Address) and (ip.is_site_local or ip in _ULA):
        return "a private (unique local) address"
    if ip.is_reserved:
        return "a reserved address"
    if isinstance(ip, ipaddress.IPv4Address) and any(ip in n for n in _RFC1918):
        return "a private (RFC 1918) address"
    if ip.is_private or not ip.is_global:
        return "a special-purpose address that is not publicly routable"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and str(sockaddr[0]) not in addresses:
            addresses.append(str(sockaddr[0]))
    return addresses


def _allow_entry(entry: str) -> tuple[str, int | None]:
    try:
        raw_host, port = _split_host_port(entry, None)
        host, _ = _normalize_host(raw_host)
    except EgressRefused as exc:
        raise ValueError(f"{SETTING}: entry {entry!r}: {exc}") from None
    return host, port


def _server_url_entry(url: str) -> tuple[str, int] | None:
    """host:port of an operator's URL (AGENTOK_LLM_BASE_URL), read leniently: the operator chose it. One that
    is no http(s) URL allows nothing (and every call to it is refused, saying why), as before the policy it
    failed every call."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host, port = _split_host_port(parts.netloc.rpartition("@")[2], _DEFAULT_PORTS.get(scheme))
        if port is None:
            raise EgressRefused("must be an http:// or https:// URL")
        return _normalize_host(host)[0], port
    except (ValueError, EgressRefused) as exc:
        log.warning("AGENTOK_LLM_BASE_URL %r is not a URL the server can call: %s", url, exc)
        return None


class EgressPolicy:
    """Which hosts a tenant's URL may reach. `allowed_hosts`: the operator's list (`host` or `host:port`;
    AGENTOK_EGRESS_ALLOWED_HOSTS, comma-separated); `server_urls`: URLs the operator configured for the
    server itself (AGENTOK_LLM_BASE_URL), whose host:port is always allowed."""

    def __init__(
        self,
        allowed_hosts: str | Iterable[str] = (),
        *,
        server_urls: Iterable[str | None] = (),
        resolver: Resolver = system_resolver,
        resolve_timeout: float = RESOLVE_TIMEOUT_SECONDS,
    ) -> None:
        entries = allowed_hosts.split(",") if isinstance(allowed_hosts, str) else list(allowed_hosts)
        self._listed: frozenset[tuple[str, int | None]] = frozenset(
            _allow_entry(e.strip()) for e in entries if e.strip()
        )
        self._allowed: set[tuple[str, int | None]] = set(self._listed)
        self._allowed |= {entry for u in server_urls if u and (entry := _server_url_entry(u)) is not None}
        self._resolve = resolver
        self._resolve_timeout = resolve_timeout

    def allows_host(self, host: str, port: int) -> bool:
        return (host, port) in self._allowed or (host, None) in self._allowed

    def lists(self, host: str, port: int) -> bool:
        """Whether the operator's own list (AGENTOK_EGRESS_ALLOWED_HOSTS) names host:port, matched as
        allows_host matches; the server's AGENTOK_LLM_BASE_URL does not count: an http tool's host needs
        the operator's word."""
        return (host, port) in self._listed or (host, None) in self._listed

    async def check_url(self, url: object, *, allow_query: bool = False) -> Target:
        """The URL checked and resolved (once: connect to `Target.addresses` only), or EgressRefused."""
        parsed = parse_url(url, allow_query=allow_query)
        listed = self.allows_host(parsed.host, parsed.port)
        where = f"{parsed.host}:{parsed.port}" if ":" not in parsed.host else f"[{parsed.host}]:{parsed.port}"
        hint = f"; an operator can allow {where} with {SETTING}"
        if parsed.ip is not None:
            addresses: Sequence[str] = [str(parsed.ip)]
        else:
            if not listed and (parsed.host == "localhost" or parsed.host.endswith(".localhost")):
                raise EgressRefused(f"{parsed.host} is a loopback name{hint}")
            addresses = await self._resolved(parsed.host, parsed.port)
        for address in addresses:
            ip = ipaddress.ip_address(address)
            # A listed host lifts the address rules, except for a name that resolves to a metadata address:
            # only that address itself, listed, may be reached (a name can be repointed; the address not).
            if listed and (ip not in _METADATA or parsed.ip is not None):
                continue
            why = refusal(ip)
            if why is not None:
                said = "is" if parsed.ip is not None else f"resolves to {address},"
                raise EgressRefused(f"{parsed.host} {said} {why}{hint}")
        return Target(parsed.scheme, parsed.host, parsed.port, parsed.path, parsed.query, tuple(addresses))

    async def _resolved(self, host: str, port: int) -> Sequence[str]:
        try:
            addresses = await asyncio.wait_for(self._resolve(host, port), self._resolve_timeout)
        except TimeoutError:
            raise EgressRefused(f"{host} did not resolve within {self._resolve_timeout:g} s") from None
        except (OSError, UnicodeError) as exc:
            raise EgressRefused(f"{host} does not resolve ({getattr(exc, 'strerror', None) or exc})") from None
        if not addresses:
            raise EgressRefused(f"{host} does not resolve to any address")
        for address in addresses:
            ipaddress.ip_address(address)  # a resolver that hands back anything else is a bug, not a tenant's
        return addresses


def redacted(url: str) -> str:
    """The URL as an error may quote it: without any user name or password in it."""
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    if sep and "@" in authority:
        return f"{scheme}://<redacted>@{authority.rpartition('@')[2]}{slash}{tail}"
    return url
