"""Client identity: peers, trusted proxies, X-Forwarded-For and Forwarded, IPv6 prefixes."""

from __future__ import annotations

import pytest

from ratelimit.http.config import load_config
from ratelimit.http.keys import ClientIdentity, RequestInfo, compile_key, normalize_ip


class Req(RequestInfo):
    """A RequestInfo with explicit headers (lower-case names; lists are repeated fields)."""

    __slots__ = ("headers", "who")

    def __init__(
        self,
        peer: str | None,
        headers: dict[str, str | list[str]] | None = None,
        who: str | None = None,
    ) -> None:
        super().__init__("GET", "/", peer)
        self.headers = headers or {}
        self.who = who

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if isinstance(value, list):
            return ",".join(value)
        return value

    def user(self) -> str | None:
        return self.who


PROXY = "10.0.0.1"
TRUSTED = ["10.0.0.0/8", "2001:db8:ffff::/48"]


def xff(value: str | list[str], peer: str = PROXY, trusted: list[str] = TRUSTED) -> str:
    return ClientIdentity(trusted).client_address(Req(peer, {"x-forwarded-for": value}))


def fwd(value: str | list[str], peer: str = PROXY) -> str:
    identity = ClientIdentity(TRUSTED, proxy_header="forwarded")
    return identity.client_address(Req(peer, {"forwarded": value}))


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        # no proxy: the peer, whatever the header says
        ("198.51.100.9", "1.2.3.4", "198.51.100.9"),
        # one trusted hop
        (PROXY, "198.51.100.9", "198.51.100.9"),
        # two trusted hops
        (PROXY, "198.51.100.9, 10.0.0.2", "198.51.100.9"),
        # spoof attempt: the client prepends a fake address; the proxy appends the real one
        (PROXY, "1.2.3.4, 198.51.100.9", "198.51.100.9"),
        (PROXY, "10.0.0.5, 198.51.100.9", "198.51.100.9"),
        # every hop trusted: the leftmost one
        (PROXY, "10.0.0.3, 10.0.0.2", "10.0.0.3"),
        # empty header, blank entries, unknown
        (PROXY, "", PROXY),
        (PROXY, " , ", PROXY),
        (PROXY, "unknown", PROXY),
        (PROXY, "198.51.100.9, unknown", PROXY),
        (PROXY, "198.51.100.9, garbage, 10.0.0.2", "10.0.0.2"),
        # ports and brackets
        (PROXY, "198.51.100.9:4711", "198.51.100.9"),
        (PROXY, "[2001:db8::17]:4711", "2001:db8::/64"),
        (PROXY, "[2001:db8::17]", "2001:db8::/64"),
        (PROXY, "2001:db8::17", "2001:db8::/64"),
        (PROXY, "198.51.100.9:99999999", PROXY),
        (PROXY, "198.51.100.9:http", PROXY),
        (PROXY, "[2001:db8::17", PROXY),
        (PROXY, "[198.51.100.9]", PROXY),
        # IPv4-mapped IPv6 counts as IPv4, as a header entry and as a peer
        (PROXY, "::ffff:198.51.100.9", "198.51.100.9"),
        (PROXY, "[::ffff:198.51.100.9]:80", "198.51.100.9"),
        ("::ffff:10.0.0.1", "198.51.100.9", "198.51.100.9"),
        ("::ffff:198.51.100.9", "1.2.3.4", "198.51.100.9"),
        # non-ASCII bytes (decoded as Latin-1 by the adapters)
        (PROXY, "198.51.100.9, 1.2.3.4\xe9", PROXY),
        (PROXY, "١٢٣.1.1.1", PROXY),
        # a trusted IPv6 proxy
        ("2001:db8:ffff::1", "198.51.100.9", "198.51.100.9"),
        # a peer that is not an IP (Unix socket, test client): itself
        ("testclient", "198.51.100.9", "testclient"),
    ],
)
def test_x_forwarded_for_matrix(peer: str, header: str, client: str) -> None:
    """X-Forwarded-For is read right to left from trusted peers only; malformed stops the walk."""
    assert xff(header, peer) == client


def test_no_trusted_proxies_never_reads_headers() -> None:
    """With no trusted proxies, even a loopback peer's header is ignored."""
    assert xff("1.2.3.4", peer="127.0.0.1", trusted=[]) == "127.0.0.1"


def test_repeated_header_fields_are_one_list() -> None:
    """Repeated X-Forwarded-For fields are read as one comma-joined list."""
    assert xff(["1.2.3.4", "198.51.100.9"]) == "198.51.100.9"
    assert xff(["198.51.100.9", "10.0.0.2"]) == "198.51.100.9"


def test_huge_and_long_headers_are_bounded() -> None:
    """A 10 kB value and 1,000 entries are handled; past 32 trusted hops the walk stops."""
    assert xff("1.2.3.4, " * 1200 + "198.51.100.9") == "198.51.100.9"
    assert xff("x" * 10_000) == PROXY
    many_trusted = ", ".join(f"10.0.{i // 250}.{i % 250 + 1}" for i in range(1000))
    result = xff("198.51.100.9, " + many_trusted)
    assert result.startswith("10.0.")  # stopped at a trusted hop, never the spoofable left end
    assert result != "198.51.100.9"


@pytest.mark.parametrize(
    ("header", "client"),
    [
        ("for=198.51.100.9", "198.51.100.9"),
        ("For=198.51.100.9;proto=https;by=10.0.0.1", "198.51.100.9"),
        ('for="198.51.100.9:4711"', "198.51.100.9"),
        ('for="[2001:db8::17]:4711"', "2001:db8::/64"),
        ('for="[2001:db8::17]"', "2001:db8::/64"),
        ("for=1.2.3.4, for=198.51.100.9", "198.51.100.9"),
        ("for=198.51.100.9, for=10.0.0.2", "198.51.100.9"),
        ("for=198.51.100.9,for=10.0.0.2;proto=http", "198.51.100.9"),
        ("for=unknown", PROXY),
        ("for=_hidden", PROXY),
        ("for=198.51.100.9, for=_hidden, for=10.0.0.2", "10.0.0.2"),
        ("proto=https", PROXY),
        ("for=198.51.100.9;for=1.2.3.4", PROXY),
        ('for="198.51.100.9', PROXY),
        ("for", PROXY),
        ("", PROXY),
        ('for="::ffff:198.51.100.9"', "198.51.100.9"),
        ("for=198.51.100.9\xff", PROXY),
    ],
)
def test_forwarded_matrix(header: str, client: str) -> None:
    """RFC 7239 Forwarded is read right to left from trusted peers; malformed stops the walk."""
    assert fwd(header) == client


def test_only_the_configured_proxy_header_is_read() -> None:
    """With proxy_header = x-forwarded-for a client-sent Forwarded header is ignored, and back."""
    headers: dict[str, str | list[str]] = {
        "forwarded": "for=1.2.3.4",
        "x-forwarded-for": "198.51.100.9",
    }
    assert ClientIdentity(TRUSTED).client_address(Req(PROXY, headers)) == "198.51.100.9"
    forwarded = ClientIdentity(TRUSTED, proxy_header="forwarded")
    assert forwarded.client_address(Req(PROXY, headers)) == "1.2.3.4"


@pytest.mark.parametrize(
    ("address", "prefix", "identity"),
    [
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        ("::ffff:192.0.2.1", 64, "192.0.2.1"),
        ("192.0.2.1", 64, "192.0.2.1"),
        ("not-an-ip", 64, None),
    ],
)
def test_ipv6_prefix_grouping(address: str, prefix: int, identity: str | None) -> None:
    """IPv6 clients are grouped per ipv6_prefix; IPv4 and mapped addresses are kept whole."""
    assert normalize_ip(address, prefix) == identity


def test_two_hosts_of_one_ipv6_64_share_a_key() -> None:
    """Two addresses of one /64 get the same counter key; another /64 does not."""
    key = compile_key("ip", ClientIdentity())
    a = key(Req("2001:db8:0:1::a"))
    assert a == key(Req("2001:db8:0:1:ffff::b")) == "ip:2001:db8:0:1::/64"
    assert a != key(Req("2001:db8:0:2::a"))


def test_key_kinds_and_fallbacks() -> None:
    """header, user and custom keys fall back to the address when they yield nothing."""
    identity = ClientIdentity()
    header = compile_key("header:X-Api-Key", identity)
    assert header(Req("192.0.2.1", {"x-api-key": "k1"})) == "header:x-api-key:k1"
    assert header(Req("192.0.2.1")) == "ip:192.0.2.1"
    user = compile_key("user", identity)
    assert user(Req("192.0.2.1", who="alice")) == "user:alice"
    assert user(Req("192.0.2.1")) == "ip:192.0.2.1"
    assert compile_key("global", identity)(Req("192.0.2.1")) == "global"
    custom = compile_key(lambda request: request.header("x-tenant"), identity)
    assert custom(Req("192.0.2.1", {"x-tenant": "t9"})).endswith(":t9")
    assert custom(Req("192.0.2.1")) == "ip:192.0.2.1"
    assert compile_key("ip", identity)(Req(None)) == "ip:unknown"
    long_value = header(Req("192.0.2.1", {"x-api-key": "k" * 10_000}))
    assert long_value.startswith("header:x-api-key:sha256:") and len(long_value) < 100


def test_config_feeds_the_identity() -> None:
    """trusted_proxies, ipv6_prefix and proxy_header from a config reach the engine."""
    from ratelimit.http.engine import Engine

    config = load_config(
        {"trusted_proxies": ["10.0.0.0/8"], "ipv6_prefix": 48, "proxy_header": "Forwarded"}
    )
    eng = Engine(config)
    assert eng.identity.client_address(Req(PROXY, {"forwarded": "for=198.51.100.9"})) == (
        "198.51.100.9"
    )
    assert eng.identity.client_address(Req("2001:db8:1:2::1")) == "2001:db8:1::/48"
