"""``ratelimit top`` and ``engine.top()`` tell "nobody was rejected" apart from "rejections
are not being recorded" (workers without a ``[metrics]`` option record nothing)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from ratelimit.cli import main
from ratelimit.http.engine import Engine
from ratelimit.metrics import observer as observer_module
from ratelimit.metrics.top import BEAT, RedisTop
from tests.metrics.conftest import hit

RULES = [{"name": "api", "path": "/api/**", "limit": "1/hour", "algorithm": "sliding_window"}]


def engine_on(redis_url: str, metrics: dict[str, Any] | None) -> Engine:
    """An engine on the test Redis, with or without a ``[metrics]`` table."""
    config: dict[str, Any] = {"backend": redis_url, "timeout": 2.0, "rules": RULES}
    if metrics is not None:
        config["metrics"] = metrics
    return Engine(config)


@pytest.mark.redis
def test_top_says_rejections_are_not_recorded(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Workers without [metrics] reject clients but record nothing: ``ratelimit top`` says
    recording is off and how to turn it on, never "nobody was rejected"."""
    engine = engine_on(redis_url, None)
    statuses = [hit(engine, "/api/x").reply for _ in range(3)]
    engine.backend.close()
    assert [r.status if r else 200 for r in statuses] == [200, 429, 429]
    assert main(["top", "--backend", redis_url]) == 0
    out = capsys.readouterr().out
    assert "nobody was rejected" not in out
    assert "rejections are not being recorded" in out
    assert "[metrics]" in out and 'status_path = "/_ratelimit"' in out
    assert main(["top", "--backend", redis_url, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == []
    assert "warning: rejections are not being recorded" in captured.err


@pytest.mark.redis
def test_top_says_nobody_was_rejected_while_recording(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker with a [metrics] option keeps the recording marker alive from its first
    request: with no rejection, ``ratelimit top`` says nobody was rejected; after one, the
    table lists it."""
    engine = engine_on(redis_url, {"status_path": "/_ratelimit"})
    assert hit(engine, "/api/x").reply is None
    assert main(["top", "--backend", redis_url]) == 0
    out = capsys.readouterr().out
    assert "nobody was rejected (rejections are being recorded" in out
    assert "not being recorded" not in out
    rejected = hit(engine, "/api/x")
    assert rejected.reply is not None and rejected.reply.status == 429
    engine.backend.close()
    assert main(["top", "--backend", redis_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["rule", "identity", "rejections"]
    assert lines[3].split() == ["api", "ip:192.0.2.1", "1"]


@pytest.mark.redis
def test_the_heartbeat_is_written_at_most_once_a_beat(redis_url: str) -> None:
    """RedisTop.beat writes the marker (Unix time, with the sorted sets' TTL) on the first
    call, not again within BEAT seconds, and again after."""
    from ratelimit.backends.redis import RedisBackend

    now = [1_000_000.0]
    backend = RedisBackend.from_url(redis_url, timeout=2.0)
    try:
        top = RedisTop(backend, clock=lambda: now[0])
        assert top.recorded_at() is None
        top.beat()
        assert top.recorded_at() == 1_000_000.0
        ttl = backend._sync_client().ttl(top.marker_key)
        assert (top.minutes) * 60 < ttl <= (top.minutes + 1) * 60
        now[0] += BEAT - 1
        top.beat()
        assert top.recorded_at() == 1_000_000.0
        now[0] += 2
        top.beat()
        assert top.recorded_at() == 1_000_000.0 + BEAT + 1
    finally:
        backend.close()


def test_engine_top_says_once_that_nothing_is_recorded(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """engine.top() on a process-local backend without [metrics] is empty, and a WARNING
    (once) says that rejections are not being recorded."""
    monkeypatch.setattr(observer_module, "_warned_not_recording", False)
    engine = Engine({"rules": RULES})
    for _ in range(3):
        hit(engine, "/api/x")
    with caplog.at_level(logging.WARNING, logger="ratelimit.metrics"):
        assert engine.top() == [] and engine.top() == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "ratelimit.metrics"]
    assert len(warnings) == 1 and "not being recorded" in warnings[0]
    recording = Engine({"rules": RULES, "metrics": {"status_path": "/_ratelimit"}})
    for _ in range(3):
        hit(recording, "/api/x")
    assert recording.top() == [("api", "ip:192.0.2.1", 2)]
