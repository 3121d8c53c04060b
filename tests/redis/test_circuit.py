"""The circuit breaker and URL parsing of the Redis backend (no server needed)."""

from __future__ import annotations

import pytest

from ratelimit import BackendError, ConfigError, RedisBackend
from ratelimit.backends.circuit import CircuitBreaker
from ratelimit.backends.redis_url import parse_redis_url
from tests.conftest import FakeClock


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    """N failures in a row open the breaker; a success in between starts the count over."""
    breaker = CircuitBreaker(threshold=3, cooldown=10.0, clock=FakeClock())
    breaker.failure()
    breaker.failure()
    breaker.success()
    breaker.failure()
    breaker.failure()
    breaker.check()  # still closed: only two in a row
    breaker.failure()
    assert breaker.is_open
    with pytest.raises(BackendError, match="circuit open"):
        breaker.check()


def test_breaker_lets_one_probe_through_after_the_cooldown() -> None:
    """After the cool-down exactly one call probes; its success closes the breaker."""
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=2.0, clock=clock)
    breaker.failure()
    clock.advance(1.999)
    with pytest.raises(BackendError):
        breaker.check()
    clock.advance(0.001)
    breaker.check()  # the probe
    with pytest.raises(BackendError, match="probe"):
        breaker.check()  # a second caller while the probe is out
    breaker.success()
    breaker.check()
    assert not breaker.is_open


def test_failed_probe_starts_a_new_cooldown() -> None:
    """A probe that fails opens the breaker again for a whole cool-down."""
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=5, cooldown=1.0, clock=clock)
    for _ in range(5):
        breaker.failure()
    clock.advance(1.0)
    breaker.check()
    breaker.failure()
    clock.advance(0.5)
    with pytest.raises(BackendError, match="circuit open"):
        breaker.check()
    clock.advance(0.5)
    breaker.check()


def test_lost_probe_expires() -> None:
    """A probe that never reports back does not keep the breaker half-open forever."""
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    breaker.failure()
    clock.advance(1.0)
    breaker.check()  # probe lost (its task was cancelled, say)
    clock.advance(1.0)
    breaker.check()  # a new probe is allowed


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0}, "threshold"),
        ({"cooldown": -1}, "cooldown"),
        ({"threshold": True}, "threshold"),
    ],
)
def test_breaker_settings_are_checked(kwargs: dict[str, object], match: str) -> None:
    """Bad breaker settings are ConfigErrors naming the setting."""
    with pytest.raises(ConfigError, match=match):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_url_hosts_and_credentials() -> None:
    """Cluster and Sentinel URLs give their host lists, credentials, service and database."""
    target = parse_redis_url("redis+cluster://user:p%40ss@10.0.0.1:7000,[::1]:7001?timeout=0.3")
    assert target.hosts == (("10.0.0.1", 7000), ("::1", 7001))
    assert target.credentials == {"username": "user", "password": "p@ss"}
    assert target.timeout == 0.3
    sentinel = parse_redis_url("redis+sentinel://:secret@h:1,h2:2/my%20master/3")
    assert sentinel.credentials == {"password": "secret"}
    assert (sentinel.service, sentinel.db, sentinel.timeout) == ("my master", 3, None)
    assert parse_redis_url("redis+cluster://h:1").credentials == {}


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "rediss://localhost:6380/1",
        "unix:///tmp/redis.sock?db=2",
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
        "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/1",
    ],
)
def test_every_scheme_builds_without_connecting(url: str) -> None:
    """from_url accepts every documented scheme and connects to nothing until used."""
    backend = RedisBackend.from_url(url)
    assert "RedisBackend" in repr(backend)
    backend.close()


def test_unknown_scheme_is_a_config_error() -> None:
    """A non-Redis scheme given to RedisBackend.from_url is a ConfigError naming the URL."""
    with pytest.raises(ConfigError, match="mongodb"):
        RedisBackend.from_url("mongodb://localhost")
