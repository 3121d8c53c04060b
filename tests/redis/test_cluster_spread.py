"""Scaling out on a real three-master Redis Cluster: client keys spread evenly over the
shards, and a decision costs each shard what it costs a single server.

(The time a decision costs, per shard and on one server, is measured by
``python -m benchmarks.redis``, not asserted here: timing belongs in benchmarks.)
"""

from __future__ import annotations

from typing import Any

import pytest

from ratelimit import Limit, RedisBackend
from ratelimit.algorithms import ALGORITHMS
from tests.support.redis_server import RedisCluster

pytestmark = pytest.mark.redis

CLIENTS = 10_000


def _clients(n: int) -> list[str]:
    """Client identities as the middleware makes them: IPv4 addresses, a few API keys."""
    ips = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n - n // 10)]
    return ips + [f"key_{i:08x}" for i in range(n // 10)]


def _node_client(node: Any) -> Any:
    import redis

    return redis.Redis(port=node.port, socket_timeout=10)


def _port_client(port: int) -> Any:
    import redis

    return redis.Redis(port=port, socket_timeout=10)


def _master_ports(cluster: RedisCluster) -> list[int]:
    """The ports of the masters that serve slots now (an earlier test may have failed one
    over to its replica)."""
    for node in cluster.nodes:
        try:
            with _node_client(node) as client:
                text = client.execute_command("CLUSTER", "NODES")
        except Exception:  # a node an earlier test stopped
            continue
        if isinstance(text, dict):  # some redis-py versions parse the reply
            nodes = [(addr, str(info.get("flags", ""))) for addr, info in text.items()]
            slotted = {addr for addr, info in text.items() if info.get("slots")}
        else:
            if isinstance(text, bytes):
                text = text.decode()
            rows = [line.split() for line in str(text).splitlines() if line.strip()]
            nodes = [(row[1], row[2]) for row in rows]
            slotted = {row[1] for row in rows if len(row) > 8}
        return sorted(
            int(addr.split("@")[0].rsplit(":", 1)[1])
            for addr, flags in nodes
            if "master" in flags and "fail" not in flags and addr in slotted
        )
    raise AssertionError("no cluster node answers")


def _stats(client: Any) -> dict[str, int]:
    """command -> calls, from INFO commandstats."""
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in client.info("commandstats").items()
    }


def test_ten_thousand_clients_spread_evenly_over_three_shards(
    redis_cluster_setup: RedisCluster,
) -> None:
    """10,000 client keys land on the three masters in equal shares: 33% ± 3% each (the
    hash tag is a hash of the client key, so no identity picks its slot)."""
    backend = RedisBackend.from_url(redis_cluster_setup.url, prefix="spread:", timeout=5)
    # A day-long log: no key can expire during the test (a minute's window could end mid-run).
    limit = Limit("100/day", algorithm="sliding_log")
    for client in _clients(CLIENTS):
        assert backend.decide(client, [limit], 1)[0].allowed
    backend.close()
    counts = []
    for port in _master_ports(redis_cluster_setup):  # as the cluster sees them now
        with _port_client(port) as client:
            counts.append(sum(1 for _ in client.scan_iter(match="spread:*", count=1000)))
    assert len(counts) == 3
    assert sum(counts) == CLIENTS
    shares = [count / CLIENTS for count in counts]
    assert all(abs(share - 1 / 3) <= 0.03 for share in shares), shares


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_decision_costs_each_shard_what_it_costs_one_server(
    redis_cluster_setup: RedisCluster, redis_url: str, algorithm: str
) -> None:
    """Per decision, every shard runs exactly the commands a single server runs (one
    EVALSHA, its TIME, GET and SET; no MOVED redirects, no extra round trips), one or three
    limits per call."""
    limits = [Limit(rate, algorithm=algorithm) for rate in ("100/minute", "1000/hour")]
    clients = _clients(600)
    nodes = [_node_client(node) for node in redis_cluster_setup.nodes]
    single = _node_client_from_url(redis_url)
    cluster = RedisBackend.from_url(redis_cluster_setup.url, prefix=f"cost-{algorithm}:", timeout=5)
    server = RedisBackend.from_url(redis_url, prefix=f"cost-{algorithm}:", timeout=5)
    cluster.decide("warm-up", limits[:1], 1)  # loads the script and the slot map
    server.decide("warm-up", limits[:1], 1)
    for client in [*nodes, single]:
        client.config_resetstat()
    for backend in (cluster, server):
        for _ in range(3):
            for client in clients:
                assert all(d.allowed for d in backend.decide(client, limits[:1], 1))
                assert all(d.allowed for d in backend.decide(client, limits, 1))
    per_node = [_stats(client) for client in nodes]
    alone = _stats(single)
    assert sum(stats.get("evalsha", 0) for stats in per_node) == alone["evalsha"]
    for stats in per_node:
        assert stats["evalsha"] > alone["evalsha"] / 4  # every shard takes its share
        for command in ("time", "get"):
            assert stats[command] / stats["evalsha"] == alone[command] / alone["evalsha"]
        # One write per decision: SET when a window starts, INCRBY within a window (which
        # of the two depends on where the turn of a minute falls in the run, so only their
        # sum is compared).
        assert _writes(stats) / stats["evalsha"] == _writes(alone) / alone["evalsha"]
        assert not {"eval", "cluster|slots", "asking"} & set(stats)  # no reloads, no redirects
    for client in [*nodes, single]:
        client.close()
    cluster.close()
    server.close()


def _writes(stats: dict[str, int]) -> int:
    """The state writes a server ran: SET and INCRBY."""
    return stats.get("set", 0) + stats.get("incrby", 0)


def _node_client_from_url(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=10)
