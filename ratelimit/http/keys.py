"""Client identity: who a request counts against.

``ip`` is the peer address. Only when the peer is in ``trusted_proxies`` are the proxy
headers believed: the configured header (``X-Forwarded-For`` by default, or RFC 7239
``Forwarded``) is read right to left, trusted hops are skipped, and the first untrusted
address is the client. A malformed entry (not an address, ``unknown``, an obfuscated
identifier, a bad port, non-ASCII bytes, ...) stops the walk: the client is then the last
address that was read, which is a trusted proxy, so a client cannot choose its identity by
sending garbage. ``::ffff:a.b.c.d`` counts as ``a.b.c.d``; other IPv6 addresses are cut to
``ipv6_prefix`` bits (default /64, what one host usually gets).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Any

from ratelimit.errors import ConfigError

__all__ = [
    "ClientIdentity",
    "KeyFunc",
    "KeySpec",
    "RequestInfo",
    "awaitable_error",
    "bounded_identity",
    "compile_key",
    "counter_key",
    "is_async_callable",
    "key_prefix",
    "normalize_ip",
    "refuse_async",
]

#: A key function: given the request, the client identity (``None`` falls back to ``ip``).
KeyFunc = Callable[["RequestInfo"], "str | None"]
#: What a ``key`` setting may be: ``ip``, ``user``, ``global``, ``header:<name>``,
#: ``"module:callable"``, or a Python callable.
KeySpec = str | KeyFunc

#: Identities longer than this are replaced by their SHA-256, so a 10 kB header value cannot
#: become a 10 kB key in the backend.
_MAX_IDENTITY = 200


#: The most proxy-header entries read from the right; further entries stop the walk.
MAX_HOPS = 32

Address = IPv4Address | IPv6Address


class RequestInfo:
    """What the engine needs to know about a request, without any framework.

    Adapters subclass it to read headers and the user from their native request.

    Attributes:
        method: the upper-case method (``GET`` for WebSocket handshakes).
        path: the request path (decoded).
        peer: the address of the connected peer, or ``None`` (for example a Unix socket).
        native: the framework's own request object (ASGI scope, WSGI environ, Django request).
    """

    __slots__ = ("method", "native", "path", "peer")

    def __init__(self, method: str, path: str, peer: str | None, native: Any = None) -> None:
        self.method = method
        self.path = path
        self.peer = peer
        self.native = native

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (lower case), repeated fields joined with ``,``."""
        return None

    def user(self) -> str | None:
        """The authenticated user's identity, or ``None`` for an anonymous request."""
        return None

    def user_attribute(self, name: str) -> str | None:
        """Attribute ``name`` of the authenticated user as text (``tier = "user:plan"``), or
        ``None`` (anonymous, no such attribute, or a framework without user objects)."""
        return None


@lru_cache(maxsize=8192)
def _parse(text: str) -> Address | None:
    try:
        addr = ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr.scope_id is not None:
            return IPv6Address(text.split("%", 1)[0])
    return addr


@lru_cache(maxsize=8192)
def normalize_ip(text: str, ipv6_prefix: int = 64) -> str | None:
    """The identity of an address: ``a.b.c.d``, or the IPv6 network; ``None`` if not an IP."""
    addr = _parse(text)
    if addr is None:
        return None
    if isinstance(addr, IPv6Address) and ipv6_prefix < 128:
        return str(IPv6Network((addr, ipv6_prefix), strict=False))
    return str(addr)


def _node(text: str) -> Address | None:
    """One hop of a proxy header: ``addr``, ``addr:port``, ``[v6]`` or ``[v6]:port``."""
    text = text.strip()
    if not text or not text.isascii():
        return None
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest and not (rest[0] == ":" and rest[1:].isdigit() and len(rest) <= 6):
            return None
        addr = _parse(host)
        return addr if isinstance(addr, IPv6Address) or host.startswith("::ffff:") else None
    if text.count(":") == 1:
        host, port = text.split(":")
        if not port.isdigit() or len(port) > 5:
            return None
        addr = _parse(host)
        return addr if isinstance(addr, IPv4Address) else None
    return _parse(text)


def _forwarded_for(element: str) -> Address | None:
    """The ``for=`` node of one RFC 7239 ``Forwarded`` element, or None when malformed."""
    found: Address | None = None
    seen = False
    for pair in element.split(";"):
        name, sep, value = pair.strip().partition("=")
        if not sep:
            return None
        if name.strip().lower() != "for":
            continue
        if seen:  # two for= in one element: malformed
            return None
        seen = True
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        elif '"' in value:
            return None
        found = _node(value)
        if found is None:
            return None
    return found


class ClientIdentity:
    """Finds the client address of a request: peer, trusted proxies, IPv6 prefix.

    Args:
        trusted_proxies: CIDRs (or single addresses) of the proxies whose headers are
            believed.
        ipv6_prefix: how many leading bits of an IPv6 address identify one client.
        proxy_header: ``"x-forwarded-for"`` or ``"forwarded"``: the header the trusted
            proxies set (only that one is read, so that a client cannot slip the other one
            past a proxy that does not overwrite it).
    """

    def __init__(
        self,
        trusted_proxies: Sequence[str] = (),
        ipv6_prefix: int = 64,
        proxy_header: str = "x-forwarded-for",
    ) -> None:
        self.networks: tuple[IPv4Network | IPv6Network, ...] = tuple(
            ip_network(cidr, strict=False) for cidr in trusted_proxies
        )
        self.ipv6_prefix = ipv6_prefix
        self.proxy_header = proxy_header
        self._forwarded = proxy_header == "forwarded"
        self._trusted_cache: dict[str, bool] = {}

    def _trusted(self, addr: Address) -> bool:
        return any(addr in net for net in self.networks)

    def _peer_trusted(self, peer: str) -> bool:
        cache = self._trusted_cache
        hit = cache.get(peer)
        if hit is None:
            addr = _parse(peer)
            hit = addr is not None and self._trusted(addr)
            if len(cache) >= 4096:
                cache.clear()
            cache[peer] = hit
        return hit

    def client_address(self, request: RequestInfo) -> str:
        """The client identity of ``request``: a normalised address, or the raw peer text."""
        peer = request.peer
        if peer is None:
            return "unknown"
        if self.networks and self._peer_trusted(peer):
            addr = self._walk(request)
            if addr is not None:
                return normalize_ip(str(addr), self.ipv6_prefix) or str(addr)
        return normalize_ip(peer, self.ipv6_prefix) or bounded_identity(peer)

    def _walk(self, request: RequestInfo) -> Address | None:
        """The first untrusted hop from the right, or the last well-formed one."""
        value = request.header(self.proxy_header)
        if not value:
            return None
        client: Address | None = None
        entries = value.rsplit(",", MAX_HOPS)
        for index in range(len(entries) - 1, -1, -1):
            if index == 0 and len(entries) > MAX_HOPS:
                break  # more hops than anyone deploys: stop at the last trusted one
            entry = entries[index]
            addr = _forwarded_for(entry) if self._forwarded else _node(entry)
            if addr is None:
                break
            client = addr
            if not self._trusted(addr):
                break
        return client


def key_prefix(spec: KeySpec) -> str:
    """The counter-key prefix of a key spec: what kind of identity the counters hold."""
    if callable(spec):
        name = getattr(spec, "__qualname__", None) or type(spec).__qualname__
        return f"custom:{getattr(spec, '__module__', '?')}.{name}:"
    if spec == "global":
        return "global"
    if spec.startswith("header:"):
        return f"header:{spec[7:].lower()}:"
    if spec in ("ip", "user"):
        return f"{spec}:"
    return f"custom:{spec}:"


def counter_key(spec: KeySpec, identity: str, ipv6_prefix: int = 64) -> str:
    """The counter key of a client ``identity`` under key ``spec`` (what
    :func:`compile_key`'s functions give for a request of that client)."""
    prefix = key_prefix(spec)
    if prefix == "global":
        return prefix
    if spec == "ip":
        identity = normalize_ip(identity, ipv6_prefix) or identity
    return prefix + bounded_identity(identity)


def bounded_identity(identity: str) -> str:
    """``identity``, or its SHA-256 when it is too long to be a backend key."""
    if len(identity) <= _MAX_IDENTITY:
        return identity
    return "sha256:" + hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()


@lru_cache(maxsize=8192)
def _peer_key(peer: str | None, ipv6_prefix: int) -> str:
    """The ``ip:`` counter key of a peer when no proxy is trusted (cached per peer)."""
    if peer is None:
        return "ip:unknown"
    return "ip:" + (normalize_ip(peer, ipv6_prefix) or bounded_identity(peer))


def first_value(value: str | None) -> str | None:
    """The first of a header's comma-separated values, stripped.

    A client that sends a key header twice (``k1`` and ``junk``) reaches the adapters as one
    joined value (``k1,junk``: WSGI servers and Django join repeated fields, ASGI adapters
    join them too). Starlette and Flask hand the application the first field, so the first
    value is the identity the application sees — and appending values cannot mint a fresh
    budget. (An identity can therefore not contain a comma.)
    """
    if value is None:
        return None
    return value.split(",", 1)[0].strip()


def _user_key(request: RequestInfo) -> str | None:
    return request.user()


def import_callable(spec: str, what: str = "key", usage: str = "") -> Callable[..., Any]:
    """The callable named ``"module:attr"`` (a ``key``, ``tier`` or ``cost`` setting);
    :class:`ConfigError` naming ``what`` when it cannot be had (``usage``: the valid forms)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"invalid {what} {spec!r}" + (f": use {usage}" if usage else ""))
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"invalid {what} {spec!r}: cannot import it ({exc})") from None
    if not callable(target):
        raise ConfigError(f"invalid {what} {spec!r}: not callable")
    result: Callable[..., Any] = target
    return result


def is_async_callable(func: object) -> bool:
    """Whether calling ``func`` gives an awaitable: an ``async def`` function, a
    :func:`functools.partial` of one, or an object whose ``__call__`` is ``async def``.

    A ``key``, ``tier`` or ``cost`` function of this kind is awaited by the asyncio adapters
    and refused at start-up by the blocking ones (WSGI, Flask, Django's sync path).
    """
    while isinstance(func, functools.partial):
        func = func.func
    if inspect.iscoroutinefunction(func):
        return True
    if inspect.isroutine(func) or isinstance(func, type):
        return False
    return inspect.iscoroutinefunction(getattr(func, "__call__", None))  # noqa: B004


def awaitable_error(what: str, func: object, value: object) -> TypeError:
    """The error for a ``what`` (``key``, ``tier``, ``cost``) function that returned the
    awaitable ``value`` where a value was due: closes ``value`` (no "never awaited" warning)
    and says how to fix it. A bug in user code: raised, never a silent bypass."""
    close = getattr(value, "close", None)
    if close is not None:
        close()
    return TypeError(
        f"the {what} function {func!r} returned an awaitable ({type(value).__name__}) where "
        f"a {what} was due. An `async def` {what} function is awaited under ASGI (the ASGI "
        "middleware, the Starlette decorator, Django's async middleware) and refused at "
        "start-up under WSGI; declare it with `async def` (or mark it with "
        "inspect.markcoroutinefunction), or make it return its value"
    )


def refuse_async(settings: Sequence[str], adapter: str) -> None:
    """Raise :class:`ConfigError` naming the first of ``settings`` (say
    ``"config: rules[0].key"``), which name ``async def`` functions that the blocking
    ``adapter`` cannot await; nothing when ``settings`` is empty."""
    if settings:
        raise ConfigError(
            f"{settings[0]}: an async function, which {adapter} cannot await: it decides "
            "in the worker thread, with no event loop. Make it a plain function, or serve the "
            "application through ASGI (ratelimit.asgi.RateLimitMiddleware, the Starlette "
            "decorator, Django's async middleware), which awaits it"
        )


_KEY_USAGE = "ip, user, global, header:<name> or 'module:callable'"


def validate_key(spec: object) -> None:
    """Raise :class:`ConfigError` unless ``spec`` is a usable key spec."""
    if callable(spec):
        return
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"invalid key {spec!r}: expected text or a callable")
    if spec in ("ip", "user", "global"):
        return
    if spec.startswith("header:"):
        name = spec[7:]
        if not name or not all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
            raise ConfigError(f"invalid key {spec!r}: expected header:<header-name>")
        return
    import_callable(spec, usage=_KEY_USAGE)


def compile_key(spec: KeySpec, identity: ClientIdentity) -> Callable[[RequestInfo], str]:
    """A function ``request -> counter key`` for a key spec (see :func:`Rule.counter_key`).

    ``user``, ``header:<name>`` and custom keys fall back to the client address (``ip:``
    counters) when they yield nothing for a request.

    For an ``async def`` custom function (see :func:`is_async_callable`) the result is an
    ``async def`` function too, whose awaited value is the counter key: the engine awaits it
    on the asyncio path. A plain function that returns an awaitable raises ``TypeError``.
    """
    address = identity.client_address
    if spec == "ip":
        if not identity.networks:  # the hot path: no proxies, the key depends on the peer only
            prefix_bits = identity.ipv6_prefix
            return lambda request: _peer_key(request.peer, prefix_bits)
        return lambda request: "ip:" + address(request)
    if spec == "global":
        return lambda request: "global"
    prefix = key_prefix(spec)
    func: Callable[[RequestInfo], str | None]
    if callable(spec):
        func = spec
    elif spec == "user":
        func = _user_key
    elif spec.startswith("header:"):
        name = spec[7:].lower()

        def func(request: RequestInfo) -> str | None:
            return first_value(request.header(name))

    else:
        func = import_callable(spec, usage=_KEY_USAGE)

    def key(request: RequestInfo) -> str:
        value = func(request)
        if value is None or value == "":
            return "ip:" + address(request)
        if not isinstance(value, str) and inspect.isawaitable(value):
            raise awaitable_error("key", func, value)
        return prefix + bounded_identity(str(value))

    if not is_async_callable(func):
        return key
    afunc: Callable[[RequestInfo], Awaitable[str | None]] = func  # type: ignore[assignment]

    async def akey(request: RequestInfo) -> str:
        value = await afunc(request)
        if value is None or value == "":
            return "ip:" + address(request)
        if not isinstance(value, str) and inspect.isawaitable(value):
            raise awaitable_error("key", func, value)
        return prefix + bounded_identity(str(value))

    return akey  # type: ignore[return-value]  # awaited by the engine (see the docstring)
