"""Load-test the example apps with locust: anonymous visitors, API-key clients, a login flood.

Start an example app (it reads ``examples/ratelimit.toml``), then run locust against it, from
the repository root::

    uvicorn examples.starlette_app:app --port 8000
    locust -f examples/loadtest/locustfile.py --host http://127.0.0.1:8000 \\
        --headless -u 20 -r 10 -t 30s --status-json out/statuses.json

A 429 is what a rate limiter is for: it counts as an *expected* answer, not as a failure,
as long as it looks like one of ours (``Retry-After`` and a problem+json body). A failure is
anything else: a 5xx, a connection error, a 429 on the exempt ``/healthz``, or a 429
without ``Retry-After``. ``--status-json PATH`` writes the count of every status per route
when the run ends (locust's own statistics do not tell a 200 from an expected 429).

Every locust user comes from the same address, so they share the address-keyed budgets:
the point is to see the limits bite under load, not to model a population of clients.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Any

from locust import HttpUser, between, constant, constant_pacing, events, task

#: Status counts per route name: ``{"POST /auth/login": {"200": 5, "429": 70}, ...}``.
STATUSES: dict[str, Counter[str]] = {}

_api_keys = itertools.count(1)


def _options(parser: Any) -> None:
    parser.add_argument(
        "--status-json",
        default="",
        help="write the status counts per route to this JSON file when the test stops",
    )


def _write_statuses(environment: Any, **_: Any) -> None:
    table = {name: dict(sorted(counts.items())) for name, counts in sorted(STATUSES.items())}
    for name, counts in table.items():
        print(f"statuses  {name:<22} {counts}")
    path = getattr(environment.parsed_options, "status_json", "")
    if path:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(table, out, indent=2)


# locust's event hooks carry no annotations: registered through an ``Any`` for mypy --strict.
_hooks: Any = events
_hooks.init_command_line_parser.add_listener(_options)
_hooks.test_stop.add_listener(_write_statuses)


def _never_admitted(response: Any) -> bool:
    """A 429 for a cost above the capacity: no ``Retry-After``, ``"retry_after": null``."""
    try:
        body = json.loads(response.content or b"{}")
    except ValueError:
        return False
    return isinstance(body, dict) and "retry_after" in body and body["retry_after"] is None


def judge(response: Any, name: str, *, may_be_limited: bool = True) -> None:
    """Record the status of ``response`` and mark it a success or a failure for locust.

    ``response`` is locust's ``ResponseContextManager`` (typed ``Any``: its ``success`` and
    ``failure`` methods carry no annotations).
    """
    status = response.status_code
    STATUSES.setdefault(name, Counter())[str(status) if status else "error"] += 1
    if status == 429:
        if not may_be_limited:
            response.failure("429 on a route that no rule limits")
        elif "retry-after" not in response.headers and not _never_admitted(response):
            response.failure("429 without Retry-After")
        elif not response.headers.get("content-type", "").startswith("application/problem+json"):
            response.failure("429 without a problem+json body")
        else:
            response.success()  # the limiter did its job
    elif 0 < status < 400:
        response.success()
    else:
        response.failure(f"unexpected status {status or 'no response'}")


class AnonymousVisitor(HttpUser):
    """Browses the site: the home page (rule ``site``), the items API and the health check."""

    weight = 3
    wait_time = between(0.2, 1.0)

    @task(3)
    def home(self) -> None:
        with self.client.get("/", name="GET /", catch_response=True) as response:
            judge(response, "GET /")

    @task(2)
    def items(self) -> None:
        with self.client.get("/api/items", name="GET /api/items", catch_response=True) as r:
            judge(r, "GET /api/items")

    @task(1)
    def healthz(self) -> None:
        # The exempt rule: never limited, whatever the other users do.
        with self.client.get("/healthz", name="GET /healthz", catch_response=True) as r:
            judge(r, "GET /healthz", may_be_limited=False)


class ApiClient(HttpUser):
    """A program calling the API with its own key, five times a second, steadily."""

    weight = 2
    wait_time = constant_pacing(0.2)

    def on_start(self) -> None:
        self.api_key = f"key-{next(_api_keys)}"

    @task
    def items(self) -> None:
        headers = {"X-API-Key": self.api_key}
        name = "GET /api/items (key)"
        with self.client.get(
            "/api/items", headers=headers, name=name, catch_response=True
        ) as response:
            judge(response, name)


class LoginFlood(HttpUser):
    """Someone guessing passwords as fast as they can: the ``login`` rule (5/minute) stops it."""

    weight = 1
    wait_time = constant(0.1)

    @task
    def login(self) -> None:
        name = "POST /auth/login"
        with self.client.post(
            "/auth/login",
            json={"username": "admin", "password": "guess"},
            name=name,
            catch_response=True,
        ) as response:
            judge(response, name)
