"""HTTP-layer fixtures: failing backends, in-process clients, a configured Django."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import django
import httpx
import pytest
from django.conf import settings

from ratelimit import BackendError, Decision, Limit

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="tests.http.django_urls",
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "ratelimit.contrib.django.RateLimitMiddleware",
        ],
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        RATELIMIT={"rules": [{"name": "django-limited", "path": "/limited", "limit": "2/minute"}]},
        USE_TZ=True,
    )
    django.setup()

CLIENT = ("203.0.113.7", 50000)


class FailingBackend:
    """A backend whose every call raises :class:`BackendError` (Redis down)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or BackendError("connection refused")
        self.calls = 0

    def decide(
        self, key: str, limits: Sequence[Limit], cost: int, consume: bool = True
    ) -> list[Decision]:
        self.calls += 1
        raise self.error

    async def adecide(
        self, key: str, limits: Sequence[Limit], cost: int, consume: bool = True
    ) -> list[Decision]:
        return self.decide(key, limits, cost, consume)

    def reset(self, key: str, limits: Sequence[Limit]) -> None:
        raise self.error

    async def areset(self, key: str, limits: Sequence[Limit]) -> None:
        raise self.error


class RecordingBackend:
    """Wraps a backend and records every ``decide`` call's ``(key, limit ids, cost, consume)``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, tuple[str, ...], int, bool]] = []

    def decide(
        self, key: str, limits: Sequence[Limit], cost: int, consume: bool = True
    ) -> list[Decision]:
        self.calls.append((key, tuple(limit.id for limit in limits), cost, consume))
        result: list[Decision] = self.inner.decide(key, limits, cost, consume)
        return result

    async def adecide(
        self, key: str, limits: Sequence[Limit], cost: int, consume: bool = True
    ) -> list[Decision]:
        return self.decide(key, limits, cost, consume)

    def reset(self, key: str, limits: Sequence[Limit]) -> None:
        self.inner.reset(key, limits)

    async def areset(self, key: str, limits: Sequence[Limit]) -> None:
        self.inner.reset(key, limits)


def asgi_client(app: Any, client: tuple[str, int] = CLIENT) -> httpx.AsyncClient:
    """An in-process httpx client for an ASGI app, connecting from ``client``."""
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
def failing() -> FailingBackend:
    """A backend that always raises BackendError."""
    return FailingBackend()


class SleepRecorder:
    """Stands in for ``time.sleep``: records the delays, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class AsyncSleepRecorder(SleepRecorder):
    """Stands in for ``asyncio.sleep``: records the delays, waits for nothing."""

    async def __call__(self, seconds: float) -> None:  # type: ignore[override]
        self.delays.append(seconds)
