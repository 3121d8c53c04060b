"""validate_url: every backend URL that backend_from_url would reject fails here, without
connecting and without the redis package, with a message naming the URL and the problem."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from ratelimit import ConfigError, MemoryBackend, backend_from_url
from ratelimit.backends import validate_url

GOOD = [
    "memory://",
    "memory:///",
    "memory://?max_keys=1",
    "memory://?max_keys=5&timeout=0.2",
    "redis://",
    "redis://localhost",
    "redis://localhost:6379",
    "redis://localhost:6379/0",
    "redis://localhost:6379/15?timeout=0.05",
    "REDIS://LOCALHOST:6379/0",
    "redis://user:p%40ss@10.0.0.1:6380/2",
    "redis://:secret@h:1",
    "redis://[::1]:6379/0",
    "redis://h:65535?max_connections=20&health_check_interval=10&socket_keepalive=true",
    "redis://h?client_name=api&db=3",
    "rediss://h:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem",
    "unix:///tmp/redis.sock",
    "unix:///tmp/redis.sock?db=2&timeout=1",
    "redis+cluster://h1:7000",
    "redis+cluster://h1:7000,h2:7001,[::1]:7002?timeout=0.3",
    "redis+cluster://user:pw@h1:7000",
    "redis+sentinel://h:26379/mymaster",
    "redis+sentinel://h:26379,h2:26380/mymaster/1?timeout=0.5",
    "valkey://localhost:6379/0?timeout=0.05",
    "VALKEY://:secret@h:1",
    "valkeys://h:6380/0?ssl_cert_reqs=required",
    "valkey+cluster://h1:7000,h2:7001",
    "valkey+sentinel://h:26379/mymaster/1",
]

BAD = [
    # (URL, a piece of the message that says what is wrong)
    ("", "expected scheme://"),
    ("nonsense", "expected scheme://"),
    ("localhost:6379", "expected scheme://"),
    ("memcached://localhost:11211", "unknown scheme 'memcached'"),
    ("http://localhost", "unknown scheme 'http'"),
    ("memory://?max_keys=0", "max_keys must be a whole number ≥ 1"),
    ("memory://?max_keys=-3", "max_keys must be a whole number ≥ 1"),
    ("memory://?max_keys=abc", "max_keys must be a whole number ≥ 1"),
    ("memory://?max_keys=١٢", "max_keys must be a whole number ≥ 1"),
    ("memory://?size=3", "unknown option 'size'"),
    ("memory://?max_keys=1&max_keys=2", "given twice"),
    ("memory://host", "memory:// takes no host or path"),
    ("memory://?timeout=0", "timeout must be a positive number"),
    ("redis://localhost:notaport/0", "port 'notaport' of 'localhost:notaport' is not a number"),
    ("redis://h:99999", "port 99999 of 'h:99999' is not in 1..65535"),
    ("redis://h:0", "port 0 of 'h:0' is not in 1..65535"),
    ("redis://h:", "port '' of 'h:' is not a number"),
    ("redis://h:6379/abc", "database 'abc' is not a whole number"),
    ("redis://h:6379/-1", "database '-1' is not a whole number"),
    ("redis://h/1?db=2", "the database is given twice"),
    ("redis://h?db=x", "option db='x' must be a whole number ≥ 0"),
    ("redis://h?timeout=0", "timeout must be a positive number of seconds, got '0'"),
    ("redis://h?timeout=-1", "timeout must be a positive number"),
    ("redis://h?timeout=nan", "timeout must be a positive number"),
    ("redis://h?timeout=inf", "timeout must be a positive number"),
    ("redis://h?timeout=fast", "timeout must be a positive number"),
    ("redis://h?timeout=", "timeout must be a positive number"),
    ("redis://h?socket_timeout=1", "use ?timeout=<seconds>"),
    ("redis://h?decode_responses=true", "not supported"),
    ("redis://h?colour=blue", "unknown option 'colour'"),
    ("redis://h?max_connections=0", "max_connections='0' must be a whole number ≥ 1"),
    ("redis://h?socket_keepalive=maybe", "must be one of 1, 0, true"),
    ("redis://h?ssl_cert_reqs=required", "unknown option 'ssl_cert_reqs'"),
    ("rediss://h?ssl_cert_reqs=always", "must be none|optional|required"),
    ("redis://h1:1,h2:2", "several hosts"),
    ("redis://::1:6379", "an IPv6 address goes in brackets"),
    ("redis://[::1:6379", "[::1:6379"),
    ("redis://h#frag", "unexpected fragment"),
    ("unix://", "no socket path"),
    ("unix://host/tmp/redis.sock", "unexpected host 'host'"),
    ("redis+cluster://localhost", "'localhost' has no port: expected host:port"),
    ("redis+cluster://", "no host"),
    ("redis+cluster://h1:7000,", "an empty host in the list"),
    ("redis+cluster://h1:7000,h2", "'h2' has no port"),
    ("redis+cluster://h1:70000", "port 70000 of 'h1:70000' is not in 1..65535"),
    ("redis+cluster://h1:7000/0", "a Redis Cluster has no database path"),
    ("redis+cluster://h1:7000?db=1", "unknown option 'db'"),
    ("redis+cluster://h1:7000?timeout=x", "timeout must be a positive number"),
    ("redis+sentinel://h:26379", "no service name"),
    ("redis+sentinel://h:26379/", "no service name"),
    ("redis+sentinel://h/mymaster", "'h' has no port"),
    ("redis+sentinel://h:26379/mymaster/x", "database 'x' is not a whole number"),
    ("redis+sentinel://h:26379/a/1/2", "too many path parts"),
    ("valkey://h1:1,h2:2", "several hosts: use valkey+cluster:// or valkey+sentinel://"),
    ("valkey://h?ssl_cert_reqs=required", "unknown option 'ssl_cert_reqs'"),
    ("valkey+cluster://h1:7000/0", "has no database path"),
    ("valkey+sentinel://h:26379", "expected valkey+sentinel://host:port/service[/db]"),
    ("valkey+redis://h:1", "unknown scheme 'valkey+redis'"),
]


@pytest.mark.parametrize("url", GOOD)
def test_good_urls_pass(url: str) -> None:
    """Every documented URL form passes."""
    validate_url(url)


@pytest.mark.parametrize(("url", "problem"), BAD)
def test_bad_urls_are_config_errors_naming_the_url_and_the_problem(url: str, problem: str) -> None:
    """Each bad URL is a ConfigError whose message names the URL and exactly what is wrong,
    with no config-source prefix (the config loader adds its own)."""
    with pytest.raises(ConfigError) as caught:
        validate_url(url)
    message = str(caught.value)
    assert message.startswith("invalid backend URL ")
    assert repr(url) in message or "***" in message
    assert problem in message, message


@pytest.mark.parametrize(("url", "problem"), BAD)
def test_backend_from_url_rejects_the_same(url: str, problem: str) -> None:
    """backend_from_url checks the URL first: the same error, before anything is built."""
    with pytest.raises(ConfigError, match="invalid backend URL"):
        backend_from_url(url)


def test_what_validate_url_passes_backend_from_url_builds() -> None:
    """Every good URL builds a backend (nothing connects), so a passing check means a
    passing start-up."""
    for url in GOOD:
        backend = backend_from_url(url)
        assert backend is not None
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    memory = backend_from_url("memory://?max_keys=7&timeout=0.5", timeout=0.1)
    assert isinstance(memory, MemoryBackend) and memory.max_keys == 7


def test_passwords_are_hidden_in_messages() -> None:
    """A URL's password never appears in the error message."""
    for url in ("redis://user:hunter2@h:99999", "redis+sentinel://:hunter2@h:1"):
        with pytest.raises(ConfigError) as caught:
            validate_url(url)
        assert "hunter2" not in str(caught.value) and "***" in str(caught.value)


def test_non_text_is_a_config_error() -> None:
    """A URL that is not text is a ConfigError, not a TypeError."""
    with pytest.raises(ConfigError, match="expected text"):
        validate_url(6379)  # type: ignore[arg-type]


def test_validate_url_needs_no_redis_package() -> None:
    """validate_url checks Redis URLs with the redis package unimportable."""
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from ratelimit.backends import validate_url\n"
        "validate_url('redis+sentinel://h:26379/mymaster/1?timeout=0.5')\n"
        "try:\n"
        "    validate_url('redis://h:99999')\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "not in 1..65535" in out.stdout


@pytest.mark.parametrize(
    ("valkey", "redis"),
    [
        ("valkey://u:p@h:6380/2?timeout=0.3&db=", None),
        ("valkey://u:p@h:6380/2?timeout=0.3", "redis://u:p@h:6380/2?timeout=0.3"),
        ("valkeys://h:6380/0?ssl_cert_reqs=none", "rediss://h:6380/0?ssl_cert_reqs=none"),
        ("valkey+cluster://h1:7000,h2:7001", "redis+cluster://h1:7000,h2:7001"),
        ("valkey+sentinel://:pw@h:26379/main/3", "redis+sentinel://:pw@h:26379/main/3"),
    ],
)
def test_valkey_urls_are_the_redis_urls_under_another_name(valkey: str, redis: str | None) -> None:
    """A valkey URL reads exactly as its redis twin (same target, same errors); only the
    server's name in messages differs."""
    from ratelimit.backends.redis_url import parse_redis_url

    if redis is None:
        with pytest.raises(ConfigError, match="must be a whole number"):
            parse_redis_url(valkey)
        return
    twin, target = parse_redis_url(redis), parse_redis_url(valkey)
    assert target.server == "Valkey" and twin.server == "Redis"
    assert dataclasses.replace(target, server="Redis") == twin


def test_valkey_backend_is_named_valkey_in_logs() -> None:
    """A backend built from a valkey URL is a RedisBackend whose log name says Valkey (the
    password hidden); nothing connects."""
    from ratelimit import RedisBackend

    backend = backend_from_url("valkey://:hunter2@127.0.0.1:1/0")
    assert isinstance(backend, RedisBackend)
    assert backend.breaker.name == "Valkey valkey://:***@127.0.0.1:1/0"
    assert backend.atomic_across_keys
    cluster = backend_from_url("valkey+cluster://127.0.0.1:1")
    assert isinstance(cluster, RedisBackend) and not cluster.atomic_across_keys
