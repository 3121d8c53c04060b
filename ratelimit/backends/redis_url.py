"""Redis URLs: checked without connecting (:func:`parse_redis_url`), then turned into redis-py
client factories (:func:`client_factories`) for :class:`~ratelimit.backends.redis.RedisBackend`.

* ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS),
  ``unix://[[user]:password@]/path?db=N``: redis-py's own URL syntax;
* ``redis+cluster://[[user]:password@]host:port[,host:port...]``: a Redis Cluster, found from
  any of its nodes;
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``: the master
  of ``service`` as reported by the Sentinels (the password is the master's);
* ``valkey://``, ``valkeys://``, ``valkey+cluster://``, ``valkey+sentinel://``: the same four
  for a Valkey server (:data:`VALKEY_SCHEMES`), which speaks the Redis protocol: the URL is
  read as its ``redis…`` twin and served by the same redis-py clients.

Every scheme takes ``?timeout=<seconds>`` (the longest wait for one decision, connecting
included). The single-server schemes also take a few redis-py query options
(:data:`SERVER_OPTIONS`); anything else is a :class:`~ratelimit.ConfigError` here, at
start-up, rather than a ``TypeError`` on the first request. Parsing needs no ``redis``
package: :func:`ratelimit.backends.validate_url` works without the extra.

Every sync client gets the connect and socket ``timeout`` (a socket timeout times the
wire: it does not run while the thread waits for the GIL or a pool). The asyncio clients get
the overload bound instead (:func:`~ratelimit.backends.pipelining.overload_after`, a
backstop): an asyncio timer also counts the time the event loop was busy elsewhere, so their
``timeout`` is kept by the backend's deadlines, which measure Redis
(:mod:`ratelimit.backends.deadline`). Every client gets at most one immediate retry, on a
refused or reset connection only (so a connection that died with a restarted server is
replaced at once, and a dead server costs one refused connection, not a back-off; a timeout
is never retried, which would double the wait).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from ratelimit.errors import ConfigError

__all__ = [
    "REDIS_SCHEMES",
    "SERVER_OPTIONS",
    "VALKEY_SCHEMES",
    "ClientFactories",
    "RedisTarget",
    "client_factories",
    "parse_redis_url",
    "parse_timeout",
    "redact",
]

#: Valkey's URL schemes → the Redis scheme each one stands for (Valkey is a Redis).
VALKEY_SCHEMES = {
    "valkey": "redis",
    "valkeys": "rediss",
    "valkey+cluster": "redis+cluster",
    "valkey+sentinel": "redis+sentinel",
}

#: The URL schemes of the Redis backend (Valkey's included).
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "redis+sentinel", *VALKEY_SCHEMES)

_BOOL = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _whole(minimum: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value.isascii() and value.isdigit() and int(value) >= minimum:
            return None
        return f"must be a whole number ≥ {minimum}"

    return check


def _boolean(value: str) -> str | None:
    return None if value.lower() in _BOOL else "must be one of 1, 0, true, false, yes, no"


def _text(value: str) -> str | None:
    return None if value else "must not be empty"


def _cert_reqs(value: str) -> str | None:
    return None if value in ("none", "optional", "required") else "must be none|optional|required"


#: Query options of ``redis://``, ``rediss://`` and ``unix://`` URLs besides ``timeout``,
#: with their check; they are handed to redis-py. ``ssl_*`` only on ``rediss://``.
SERVER_OPTIONS: dict[str, Callable[[str], str | None]] = {
    "db": _whole(0),
    "max_connections": _whole(1),
    "health_check_interval": _whole(0),
    "socket_keepalive": _boolean,
    "client_name": _text,
    "username": _text,
    "password": _text,
    "ssl_cert_reqs": _cert_reqs,
    "ssl_ca_certs": _text,
    "ssl_ca_path": _text,
    "ssl_certfile": _text,
    "ssl_keyfile": _text,
    "ssl_password": _text,
    "ssl_check_hostname": _boolean,
}

#: Options that exist in redis-py but would break the backend, and what to do instead.
_REFUSED = {
    "socket_timeout": "use ?timeout=<seconds> (it bounds connecting and every reply)",
    "socket_connect_timeout": "use ?timeout=<seconds> (it bounds connecting and every reply)",
    "retry_on_timeout": "a timeout is never retried: it would double the wait",
    "decode_responses": "the backend reads raw replies",
    "protocol": "the backend speaks RESP2",
}


@dataclass(frozen=True)
class RedisTarget:
    """A checked Redis URL: what the client factories need, and nothing connects yet."""

    #: The scheme, lower case: ``redis``, ``rediss``, ``unix``, ``redis+cluster`` or
    #: ``redis+sentinel`` (a Valkey URL is read as its Redis twin: see :attr:`server`).
    scheme: str
    #: For redis://, rediss:// and unix://: the URL for redis-py, without ``timeout``.
    client_url: str = ""
    #: For Cluster and Sentinel: the nodes, or the Sentinels.
    hosts: tuple[tuple[str, int], ...] = ()
    #: For Sentinel: the master's service name, and the database.
    service: str = ""
    db: int = 0
    #: ``username`` / ``password`` from the URL (Cluster and Sentinel).
    credentials: dict[str, str] = field(default_factory=dict)
    #: ``?timeout=`` in seconds, or ``None`` when the URL has none.
    timeout: float | None = None
    #: What the URL names: ``"Valkey"`` for the ``valkey…`` schemes, else ``"Redis"``
    #: (for messages and logs only: both are served alike).
    server: str = "Redis"


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    if "@" not in netloc:
        return url
    userinfo, _, hosts = netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:***" if colon else "***"
    return f"{scheme}://{shown}@{hosts}{slash}{tail}"


def _error(url: str, what: str) -> ConfigError:
    return ConfigError(f"invalid backend URL {redact(url)!r}: {what}")


def parse_timeout(url: str, text: str) -> float:
    """A ``?timeout=`` value: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not text.isascii() or not math.isfinite(value) or value <= 0:
        raise _error(url, f"timeout must be a positive number of seconds, got {text!r}")
    return value


def _query(url: str, query: str, allowed: dict[str, Callable[[str], str | None]]) -> dict[str, str]:
    """The query options, each given once, known, and valid; ``timeout`` is always allowed."""
    out: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if name in out:
            raise _error(url, f"option {name!r} is given twice")
        out[name] = value
        if name == "timeout":
            parse_timeout(url, value)
            continue
        check = allowed.get(name)
        if check is None:
            if name in _REFUSED:
                raise _error(url, f"option {name!r} is not supported: {_REFUSED[name]}")
            known = ", ".join(["timeout", *allowed]) if allowed else "timeout"
            raise _error(url, f"unknown option {name!r} (this scheme takes: {known})")
        problem = check(value)
        if problem:
            raise _error(url, f"option {name}={value!r} {problem}")
    if query and not out:
        raise _error(url, f"cannot read the query {query!r}: expected name=value&...")
    return out


def _port(url: str, item: str, text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise _error(url, f"port {text!r} of {item!r} is not a number")
    port = int(text)
    if not 1 <= port <= 65535:
        raise _error(url, f"port {port} of {item!r} is not in 1..65535")
    return port


def _host_port(url: str, item: str, *, need_port: bool) -> tuple[str, int | None]:
    """``host[:port]`` or ``[v6]:port`` → (host, port or None)."""
    item = item.strip()
    if item.startswith("["):
        end = item.find("]")
        if end < 0:
            raise _error(url, f"unclosed '[' in {item!r}")
        host, rest = item[1:end], item[end + 1 :]
        if rest and not rest.startswith(":"):
            raise _error(url, f"unexpected {rest!r} after the address in {item!r}")
        port_text = rest[1:] if rest else None
    elif item.count(":") > 1:
        raise _error(url, f"an IPv6 address goes in brackets: [{item}] or [addr]:port")
    else:
        host, colon, port_text_ = item.partition(":")
        port_text = port_text_ if colon else None
    if not host:
        raise _error(url, f"no host in {item!r}: expected host:port")
    if any(c in host for c in " /?#@"):
        raise _error(url, f"invalid host {host!r}")
    if port_text is None:
        if need_port:
            raise _error(url, f"{item!r} has no port: expected host:port")
        return host, None
    return host, _port(url, item, port_text)


def _split_netloc(netloc: str) -> tuple[str, str]:
    """(userinfo, hosts) of a netloc (a password may contain ``@``: the last one splits)."""
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        return userinfo, hosts
    return "", netloc


def _credentials(userinfo: str) -> dict[str, str]:
    if not userinfo:
        return {}
    user, sep, password = userinfo.partition(":")
    out: dict[str, str] = {}
    if sep:
        if user:
            out["username"] = unquote(user)
        if password:
            out["password"] = unquote(password)
    elif user:
        out["password"] = unquote(user)
    return out


def _hosts(url: str, hosts: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in hosts.split(","):
        if not item.strip():
            raise _error(url, "an empty host in the list: expected host:port[,host:port...]")
        host, port = _host_port(url, item, need_port=True)
        assert port is not None  # need_port
        out.append((host, port))
    return tuple(out)


def parse_redis_url(url: str) -> RedisTarget:
    """Check a Redis URL without connecting (no ``redis`` import); :class:`ConfigError`
    naming the URL (password hidden) and what is wrong."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced '[' in the host
        raise _error(url, str(exc)) from None
    given = parts.scheme.lower()
    scheme = VALKEY_SCHEMES.get(given, given)
    server = "Valkey" if given in VALKEY_SCHEMES else "Redis"
    if parts.fragment:
        raise _error(url, f"unexpected fragment '#{parts.fragment}'")
    userinfo, hosts = _split_netloc(parts.netloc)
    if scheme in ("redis", "rediss", "unix"):
        allowed = dict(SERVER_OPTIONS)
        if scheme != "rediss":
            allowed = {k: v for k, v in allowed.items() if not k.startswith("ssl_")}
        options = _query(url, parts.query, allowed)
        if scheme == "unix":
            if hosts:
                raise _error(url, f"unexpected host {hosts!r}: expected unix:///path/to/socket")
            if parts.path in ("", "/"):
                raise _error(url, "no socket path: expected unix:///path/to/socket[?db=N]")
        else:
            if "," in hosts:
                family = server.lower()
                raise _error(url, f"several hosts: use {family}+cluster:// or {family}+sentinel://")
            if hosts:
                _host_port(url, hosts, need_port=False)
            path = parts.path.strip("/")
            if path and not (path.isascii() and path.isdigit()):
                raise _error(url, f"database {path!r} is not a whole number ≥ 0 (redis://h:p/N)")
            if path and "db" in options:
                raise _error(url, "the database is given twice (path and ?db=)")
        timeout = options.pop("timeout", None)
        query = urlencode(options)
        # redis-py reads redis://, rediss:// and unix://: a Valkey URL goes as its twin.
        client_url = f"{scheme}://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
        return RedisTarget(
            scheme,
            client_url=client_url,
            timeout=None if timeout is None else parse_timeout(url, timeout),
            server=server,
        )
    if scheme in ("redis+cluster", "redis+sentinel"):
        options = _query(url, parts.query, {})
        timeout = options.get("timeout")
        if not hosts:
            raise _error(url, "no host: expected host:port[,host:port...]")
        nodes = _hosts(url, hosts)
        creds = _credentials(userinfo)
        seconds = None if timeout is None else parse_timeout(url, timeout)
        segments = [unquote(p) for p in parts.path.split("/") if p]
        if scheme == "redis+cluster":
            if segments:
                raise _error(url, "a Redis Cluster has no database path (always db 0)")
            return RedisTarget(
                scheme, hosts=nodes, credentials=creds, timeout=seconds, server=server
            )
        if not segments:
            raise _error(url, f"no service name: expected {given}://host:port/service[/db]")
        if len(segments) > 2:
            raise _error(url, f"too many path parts: expected {given}://host:port/service[/db]")
        db_text = segments[1] if len(segments) == 2 else "0"
        if not (db_text.isascii() and db_text.isdigit()):
            raise _error(url, f"database {db_text!r} is not a whole number ≥ 0")
        return RedisTarget(
            scheme,
            hosts=nodes,
            service=segments[0],
            db=int(db_text),
            credentials=creds,
            timeout=seconds,
            server=server,
        )
    raise _error(url, f"{scheme!r} is not a Redis scheme (use {', '.join(REDIS_SCHEMES)})")


#: (make a sync client, make an asyncio client) — both lazy: neither connects. Each returns
#: the client and the other clients it made (Sentinel connections), to close with it.
ClientFactories = tuple[Callable[[], tuple[Any, list[Any]]], Callable[[], tuple[Any, list[Any]]]]


def client_factories(
    target: RedisTarget, timeout: float, options: dict[str, Any]
) -> ClientFactories:
    """The sync and asyncio client factories for a checked URL (needs the ``redis`` extra)."""
    import redis
    import redis.asyncio
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.retry import Retry

    from ratelimit.backends.pipelining import overload_after

    common = {"socket_timeout": timeout, "socket_connect_timeout": timeout, **options}
    backstop = overload_after(timeout)
    # asyncio: the backend's deadlines keep ``timeout``; redis-py's own timers only bound a
    # call nobody waits for any more.
    acommon = {"socket_timeout": backstop, "socket_connect_timeout": backstop, **options}
    # Retried once, at once, on a refused or reset connection only: never on a timeout.
    retry_on = (RedisConnectionError,)

    def sync_retry() -> Retry:
        return Retry(NoBackoff(), 1, supported_errors=retry_on)

    def async_retry() -> AsyncRetry:
        return AsyncRetry(NoBackoff(), 1, supported_errors=retry_on)

    scheme = target.scheme
    url = target.client_url
    if scheme in ("redis", "rediss", "unix"):
        return (
            lambda: (redis.Redis.from_url(url, retry=sync_retry(), **common), []),
            lambda: (redis.asyncio.Redis.from_url(url, retry=async_retry(), **acommon), []),
        )
    hosts = target.hosts
    creds: dict[str, Any] = dict(target.credentials)
    if scheme == "redis+cluster":
        from redis import cluster
        from redis.asyncio.cluster import ClusterNode as AsyncNode
        from redis.asyncio.cluster import RedisCluster as AsyncCluster

        ClusterNode: Any = cluster.ClusterNode  # untyped in redis-py
        RedisCluster = cluster.RedisCluster
        return (
            lambda: (
                RedisCluster(
                    startup_nodes=[ClusterNode(h, p) for h, p in hosts], **creds, **common
                ),
                [],
            ),
            lambda: (
                AsyncCluster(startup_nodes=[AsyncNode(h, p) for h, p in hosts], **creds, **acommon),
                [],
            ),
        )
    from redis import sentinel
    from redis.asyncio import sentinel as async_sentinel

    Sentinel: Any = sentinel.Sentinel  # untyped in redis-py
    AsyncSentinel: Any = async_sentinel.Sentinel
    service, db = target.service, target.db
    sentinel_kwargs = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    asentinel_kwargs = {"socket_timeout": backstop, "socket_connect_timeout": backstop}

    def sync_master() -> tuple[Any, list[Any]]:
        sentinels = Sentinel(list(hosts), sentinel_kwargs=sentinel_kwargs, **common)
        master = sentinels.master_for(service, db=db, retry=sync_retry(), **creds)
        return master, list(sentinels.sentinels)

    def async_master() -> tuple[Any, list[Any]]:
        sentinels = AsyncSentinel(list(hosts), sentinel_kwargs=asentinel_kwargs, **acommon)
        master = sentinels.master_for(service, db=db, retry=async_retry(), **creds)
        return master, list(sentinels.sentinels)

    return sync_master, async_master
