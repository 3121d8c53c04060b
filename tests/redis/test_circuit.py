"""The circuit breaker and URL parsing of the Redis backend (no server needed)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis.exceptions as rex

from ratelimit import BackendError, ConfigError, RedisBackend
from ratelimit.backends.circuit import CircuitBreaker
from ratelimit.backends.redis import _translate, error_kind
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


def _records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("ratelimit")]


def test_an_outage_is_one_warning_and_one_info(caplog: pytest.LogCaptureFixture) -> None:
    """Opening logs one WARNING with the error (no traceback below DEBUG); fast-fails and a
    failed probe log nothing; closing logs one INFO counting every failed decision."""
    caplog.set_level(logging.INFO, logger="ratelimit")
    clock = FakeClock()
    states: list[bool] = []
    breaker = CircuitBreaker(3, 1.0, clock, name="Redis test", on_state=states.append)
    error = BackendError("Redis unavailable (connection): refused", kind="connection")
    for _ in range(3):
        breaker.check()
        breaker.failure(error)
    for _ in range(10):
        with pytest.raises(BackendError, match="circuit open") as caught:
            breaker.check()
        assert caught.value.kind == "circuit_open"
    clock.advance(1.0)
    breaker.check()  # the probe
    breaker.failure(error, decisions=4)  # a batch of 4 callers failed with it
    clock.advance(1.0)
    breaker.check()
    breaker.success()
    breaker.success()  # healthy: nothing more
    records = _records(caplog)
    assert [level for level, _ in records] == ["WARNING", "INFO"]
    assert "Redis test is failing" in records[0][1] and "refused" in records[0][1]
    assert "17 decisions failed meanwhile" in records[1][1]  # 3 + 10 fast + 4 in the probe
    assert all(r.exc_info is None for r in caplog.records)
    assert states == [False, True]
    assert breaker.failed_decisions == 0


def test_a_short_run_of_failures_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """Failures that never open the circuit are not an outage: no log line at all."""
    caplog.set_level(logging.DEBUG, logger="ratelimit")
    breaker = CircuitBreaker(5, 1.0, FakeClock())
    for _ in range(4):
        breaker.failure(BackendError("blip"))
    breaker.success()
    assert _records(caplog) == []


def test_the_traceback_comes_only_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """With the ratelimit logger at DEBUG, the opening WARNING carries the traceback."""
    caplog.set_level(logging.DEBUG, logger="ratelimit")
    breaker = CircuitBreaker(1, 1.0, FakeClock())
    try:
        raise ConnectionRefusedError("refused")
    except OSError as exc:
        breaker.failure(exc)
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.exc_info is not None


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda: rex.ConnectionError("Error 111 connecting"), "connection"),
        (lambda: rex.AuthenticationError("invalid password"), "connection"),
        (lambda: ConnectionRefusedError("refused"), "connection"),
        (lambda: rex.TimeoutError("Timeout reading"), "timeout"),
        (lambda: TimeoutError(), "timeout"),
        (lambda: rex.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"), "oom"),
        (lambda: rex.ResponseError("OOM command not allowed"), "oom"),
        (lambda: rex.ReadOnlyError("You can't write against a read only replica."), "readonly"),
        (lambda: rex.ResponseError("READONLY You can't write"), "readonly"),
        (lambda: rex.NoScriptError("No matching script"), "script"),
        (lambda: rex.ResponseError("BUSY Redis is busy running a script"), "busy"),
        (lambda: rex.ResponseError("ERR Error running script (call to f_x)"), "script"),
        (lambda: rex.ClusterDownError("The cluster is down"), "cluster"),
        (lambda: rex.ResponseError("CLUSTERDOWN Hash slot not served"), "cluster"),
        (lambda: rex.ResponseError("MASTERDOWN Link with MASTER is down"), "cluster"),
        (lambda: rex.RedisClusterException("cannot be connected"), "cluster"),
        (lambda: rex.BusyLoadingError("Redis is loading the dataset in memory"), "loading"),
        (lambda: rex.ResponseError("WRONGTYPE Operation against a key"), "other"),
        (lambda: rex.DataError("Invalid input"), "other"),
        (lambda: TypeError("a bug"), None),
        (lambda: AttributeError("a bug"), None),
        (lambda: ValueError("user code"), None),
        (lambda: KeyError("k"), None),
    ],
)
def test_error_kinds(make: Any, kind: str | None) -> None:
    """Redis errors, OS errors and timeouts map to a kind; anything else is not a backend
    failure (None: it propagates unchanged)."""
    exc = make()
    assert error_kind(exc) == kind
    translated = _translate(exc)
    if kind is None:
        assert translated is None
    else:
        assert isinstance(translated, BackendError) and translated.kind == kind
