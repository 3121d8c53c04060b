"""Redis URLs → redis-py client factories (sync and asyncio), for :class:`RedisBackend`.

* ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS), ``unix:///path?db=N``:
  redis-py's own URL syntax (its query options, such as ``ssl_cert_reqs``, work too);
* ``redis+cluster://[[user]:password@]host:port[,host:port...]``: a Redis Cluster, found from
  any of its nodes;
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``: the master
  of ``service`` as reported by the Sentinels (the password is the master's).

Every client gets the connect and socket ``timeout`` and at most one immediate retry (so a
connection that died with a restarted server is replaced at once, and a dead server costs
one refused connection, not a back-off).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from ratelimit.errors import ConfigError

__all__ = ["ClientFactories", "client_factories"]

#: (make a sync client, make an asyncio client) — both lazy: neither connects. Each returns
#: the client and the other clients it made (Sentinel connections), to close with it.
ClientFactories = tuple[Callable[[], tuple[Any, list[Any]]], Callable[[], tuple[Any, list[Any]]]]


def _hosts(url: str, netloc: str) -> list[tuple[str, int]]:
    hosts = []
    for item in netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"invalid Redis URL {url!r}: expected host:port, got {item!r}")
        hosts.append((host.strip("[]"), int(port)))
    return hosts


def _credentials(netloc: str) -> dict[str, Any]:
    if "@" not in netloc:
        return {}
    userinfo = netloc.rsplit("@", 1)[0]
    user, sep, password = userinfo.partition(":")
    out: dict[str, Any] = {}
    if sep:
        if user:
            out["username"] = unquote(user)
        if password:
            out["password"] = unquote(password)
    elif user:
        out["password"] = unquote(user)
    return out


def client_factories(url: str, timeout: float, options: dict[str, Any]) -> ClientFactories:
    """The sync and asyncio client factories for ``url``; raises ConfigError for a bad URL."""
    import redis
    import redis.asyncio
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    common = {"socket_timeout": timeout, "socket_connect_timeout": timeout, **options}

    def sync_retry() -> Retry:
        return Retry(NoBackoff(), 1)

    def async_retry() -> AsyncRetry:
        return AsyncRetry(NoBackoff(), 1)

    if scheme in ("redis", "rediss", "unix"):
        return (
            lambda: (redis.Redis.from_url(url, retry=sync_retry(), **common), []),
            lambda: (redis.asyncio.Redis.from_url(url, retry=async_retry(), **common), []),
        )
    if scheme == "redis+cluster":
        from redis import cluster
        from redis.asyncio.cluster import ClusterNode as AsyncNode
        from redis.asyncio.cluster import RedisCluster as AsyncCluster

        ClusterNode: Any = cluster.ClusterNode  # untyped in redis-py
        RedisCluster = cluster.RedisCluster
        hosts = _hosts(url, parts.netloc)
        if parts.path not in ("", "/"):
            raise ConfigError(f"invalid Redis URL {url!r}: a Redis Cluster has no database path")
        creds = _credentials(parts.netloc)
        return (
            lambda: (
                RedisCluster(
                    startup_nodes=[ClusterNode(h, p) for h, p in hosts], **creds, **common
                ),
                [],
            ),
            lambda: (
                AsyncCluster(startup_nodes=[AsyncNode(h, p) for h, p in hosts], **creds, **common),
                [],
            ),
        )
    if scheme == "redis+sentinel":
        from redis import sentinel
        from redis.asyncio import sentinel as async_sentinel

        Sentinel: Any = sentinel.Sentinel  # untyped in redis-py
        AsyncSentinel: Any = async_sentinel.Sentinel

        hosts = _hosts(url, parts.netloc)
        path = [p for p in parts.path.split("/") if p]
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ConfigError(
                f"invalid Redis URL {url!r}: expected redis+sentinel://host:port/service[/db]"
            )
        service = unquote(path[0])
        db = int(path[1]) if len(path) == 2 else 0
        creds = _credentials(parts.netloc)
        sentinel_kwargs = {"socket_timeout": timeout, "socket_connect_timeout": timeout}

        def sync_master() -> tuple[Any, list[Any]]:
            sentinels = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **common)
            master = sentinels.master_for(service, db=db, retry=sync_retry(), **creds)
            return master, list(sentinels.sentinels)

        def async_master() -> tuple[Any, list[Any]]:
            sentinels = AsyncSentinel(hosts, sentinel_kwargs=sentinel_kwargs, **common)
            master = sentinels.master_for(service, db=db, retry=async_retry(), **creds)
            return master, list(sentinels.sentinels)

        return sync_master, async_master
    raise ConfigError(
        f"invalid Redis URL {url!r}: use redis://, rediss://, unix://, redis+cluster:// "
        "or redis+sentinel://"
    )
