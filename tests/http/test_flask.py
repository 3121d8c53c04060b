"""The Flask extension and per-view decorator: Flask's test client and a real waitress server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from ratelimit import ConfigError, Decision, MemoryBackend
from ratelimit.contrib import flask as flask_contrib
from ratelimit.contrib.flask import RateLimit, limit
from ratelimit.http.headers import Reply
from ratelimit.http.keys import RequestInfo
from tests.conftest import FakeClock
from tests.http.conftest import SleepRecorder
from tests.support.servers import wsgi_server

CONFIG: dict[str, Any] = {
    "rules": [{"name": "login", "path": "/login", "methods": ["POST"], "limit": "2/minute"}]
}
ENV = {"REMOTE_ADDR": "192.0.2.9"}


@pytest.fixture(autouse=True)
def minute_start(clock: FakeClock) -> None:
    """Start at t = 1020 s, a minute boundary: fixed windows then reset in exactly 60 s."""
    clock.advance(20)


def make_app(config: Any = CONFIG, **ext: Any) -> tuple[Flask, RateLimit]:
    """An app with config rules, per-view limits, and the extension set up."""
    app = Flask(__name__)
    app.config["RATELIMIT"] = config

    @app.post("/login")
    def login() -> ResponseReturnValue:
        return "logged in"

    @app.get("/items")
    @limit("2/minute")
    def items() -> ResponseReturnValue:
        return jsonify(items=[1, 2])

    @app.get("/things/")
    @limit("2/minute", name="things")
    def things() -> ResponseReturnValue:
        return "things"

    @app.route("/a")
    @app.route("/b/<int:n>")
    @limit("2/minute", name="shared")
    def shared(n: int = 0) -> ResponseReturnValue:
        return f"shared {n}"

    @app.route("/write", methods=["GET", "POST"])
    @limit("1/minute", name="write", methods=["POST"])
    def write() -> ResponseReturnValue:
        return "written"

    @app.get("/both")
    @limit("2/minute", name="short")
    @limit("1/minute", name="tight", methods=["POST"])
    @limit("3/hour", name="long")
    def both() -> ResponseReturnValue:
        return "both"

    @app.get("/tuple")
    @limit("5/minute", name="tuple")
    def as_tuple() -> ResponseReturnValue:
        return "created", 201, {"X-Own": "1"}

    return app, RateLimit(app, **ext)


def statuses(client: Any, path: str, n: int, method: str = "GET") -> list[int]:
    return [client.open(path, method=method, environ_base=ENV).status_code for _ in range(n)]


def test_config_rules_run_in_the_wsgi_middleware(memory: MemoryBackend) -> None:
    """app.config["RATELIMIT"] rules apply to every request: the third POST is a 429."""
    app, _ = make_app(backend=memory)
    client = app.test_client()
    responses = [client.post("/login", environ_base=ENV) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0].headers["RateLimit"] == '"login";r=1;t=60'
    rejected = responses[2]
    assert rejected.content_type == "application/problem+json"
    assert rejected.headers["Retry-After"] == "60"
    assert rejected.json is not None and rejected.json["status"] == 429


def test_per_view_limit_replies_like_the_middleware(memory: MemoryBackend) -> None:
    """The view's third request is a 429 problem+json with Retry-After and IETF headers."""
    app, _ = make_app(backend=memory)
    client = app.test_client()
    responses = [client.get("/items", environ_base=ENV) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    name = "tests.http.test_flask.make_app.<locals>.items"
    assert responses[0].headers["RateLimit-Policy"] == f'"{name}";q=2;w=60'
    assert responses[1].headers["RateLimit"] == f'"{name}";r=0;t=60'
    assert responses[0].json == {"items": [1, 2]}
    rejected = responses[2]
    assert rejected.content_type == "application/problem+json"
    assert rejected.headers["Retry-After"] == "60"
    body = json.loads(rejected.data)
    assert body["status"] == 429 and body["retry_after"] == 60
    assert rejected.headers["RateLimit"] == f'"{name}";r=0;t=60'


def test_view_limits_use_the_extension_engine(memory: MemoryBackend) -> None:
    """Per-view counters live in the extension's backend and follow the config's key."""
    app, ext = make_app({"key": "header:x-api-key"}, backend=memory)
    client = app.test_client()
    assert ext.engine_for(app).backend is memory
    with app.app_context():
        assert ext.engine is ext.engine_for(app)
    for _ in range(2):
        assert client.get("/things/", headers={"X-Api-Key": "k1"}).status_code == 200
    assert client.get("/things/", headers={"X-Api-Key": "k1"}).status_code == 429
    assert client.get("/things/", headers={"X-Api-Key": "k2"}).status_code == 200


def test_url_spellings_share_the_view_budget(memory: MemoryBackend) -> None:
    """Two routes of one view share counters; a missing trailing slash is a redirect, not a
    way around the limit; other case spellings are not routed to the view at all."""
    app, _ = make_app(backend=memory)
    client = app.test_client()
    assert client.get("/a", environ_base=ENV).status_code == 200
    assert client.get("/b/7", environ_base=ENV).status_code == 200
    assert client.get("/b/07", environ_base=ENV).status_code == 429  # same view, same budget
    assert client.get("/a", environ_base=ENV).status_code == 429

    assert statuses(client, "/things/", 2) == [200, 200]
    assert client.get("/things", environ_base=ENV).status_code == 308  # not the view
    assert client.get("/things//", environ_base=ENV).status_code == 308  # merged slashes
    assert client.get("/THINGS/", environ_base=ENV).status_code == 404
    client.environ_base.update(ENV)  # the redirect's request comes from the same client
    assert client.get("/things", follow_redirects=True).status_code == 429


def test_head_counts_as_get_and_gets_no_body(memory: MemoryBackend) -> None:
    """HEAD runs the GET view, pays into its budget, and its rejection has no body."""
    app, _ = make_app(backend=memory)
    client = app.test_client()
    assert client.head("/items", environ_base=ENV).status_code == 200
    assert client.get("/items", environ_base=ENV).status_code == 200
    rejected = client.head("/items", environ_base=ENV)
    assert rejected.status_code == 429
    assert rejected.data == b""
    assert rejected.headers["Retry-After"] == "60"
    assert client.open("/items", method="head", environ_base=ENV).status_code == 429


def test_methods_option_limits_only_those_methods(memory: MemoryBackend) -> None:
    """methods=["POST"]: GETs of the view are neither limited nor given headers."""
    app, _ = make_app(backend=memory)
    client = app.test_client()
    assert statuses(client, "/write", 3) == [200, 200, 200]
    assert "RateLimit" not in client.get("/write", environ_base=ENV).headers
    assert statuses(client, "/write", 2, "POST") == [200, 429]


def test_stacked_limits_are_checked_together(memory: MemoryBackend, clock: FakeClock) -> None:
    """Stacked decorators: one rejection consumes from none, and every policy is reported."""
    app, _ = make_app(backend=memory)
    client = app.test_client()
    first = client.get("/both", environ_base=ENV)
    assert first.status_code == 200
    assert first.headers["RateLimit-Policy"] == '"short";q=2;w=60, "long";q=3;w=3600'
    assert statuses(client, "/both", 2) == [200, 429]  # "short" is spent
    clock.advance(60)  # "short" rolls over; "long" has 1 left unless the 429 consumed it
    assert statuses(client, "/both", 2) == [200, 429]


def test_view_return_values_keep_their_status_and_headers(memory: MemoryBackend) -> None:
    """A view returning (body, status, headers) keeps them and gains the rate-limit headers."""
    app, _ = make_app(backend=memory)
    response = app.test_client().get("/tuple", environ_base=ENV)
    assert response.status_code == 201
    assert response.headers["X-Own"] == "1"
    assert response.headers["RateLimit"] == '"tuple";r=4;t=60'


def test_decorator_above_route_still_limits(memory: MemoryBackend) -> None:
    """@limit written above @app.route (Flask registers the bare view) still applies, once."""
    app = Flask(__name__)
    RateLimit(app, backend=memory)

    @limit("1/minute", name="misplaced")
    @app.get("/misplaced")
    def misplaced() -> ResponseReturnValue:
        return "ok"

    @limit("1/minute", name="above")
    @app.get("/half")
    @limit("3/minute", name="below")
    def half() -> ResponseReturnValue:
        return "ok"

    client = app.test_client()
    half_first = client.get("/half", environ_base=ENV)
    assert half_first.headers["RateLimit-Policy"] == '"above";q=1;w=60, "below";q=3;w=60'
    assert client.get("/half", environ_base=ENV).status_code == 429
    first = client.get("/misplaced", environ_base=ENV)
    assert first.status_code == 200
    assert first.headers["RateLimit"] == '"misplaced";r=0;t=60'
    assert client.get("/misplaced", environ_base=ENV).status_code == 429


def test_blueprint_and_async_views(memory: MemoryBackend) -> None:
    """Blueprint views and async views are limited like any other."""
    app = Flask(__name__)
    bp = Blueprint("bp", __name__, url_prefix="/bp")

    @bp.get("/sync")
    @limit("1/minute", name="bp-sync")
    def bp_sync() -> ResponseReturnValue:
        return "sync"

    @bp.get("/async")
    @limit("1/minute", name="bp-async")
    async def bp_async() -> ResponseReturnValue:
        return "async"

    app.register_blueprint(bp)
    RateLimit(app, backend=memory)
    client = app.test_client()
    assert statuses(client, "/bp/sync", 2) == [200, 429]
    assert client.get("/bp/async", environ_base=ENV).data == b"async"
    assert client.get("/bp/async", environ_base=ENV).status_code == 429


def test_init_app_factory_reads_app_config_path(tmp_path: Path) -> None:
    """RateLimit() + init_app(app) reads app.config["RATELIMIT"], here a TOML path."""
    toml = tmp_path / "ratelimit.toml"
    toml.write_text('[[rules]]\nname = "home"\npath = "/"\nlimit = "1/minute"\n')
    ext = RateLimit()
    app = Flask(__name__)
    app.config["RATELIMIT"] = str(toml)

    @app.get("/")
    def home() -> ResponseReturnValue:
        return "home"

    ext.init_app(app)
    assert statuses(app.test_client(), "/", 2) == [200, 429]
    assert ext.engine_for(app).config.source == str(toml)


def test_invalid_config_fails_at_init_naming_the_key(tmp_path: Path) -> None:
    """A bad config raises ConfigError in init_app, naming the source and the key."""
    app = Flask(__name__)
    app.config["RATELIMIT"] = {"rules": [{"path": "/x", "limit": "5/fortnight"}]}
    with pytest.raises(ConfigError, match=r'app\.config\["RATELIMIT"\]: rules\[0\]\.limit'):
        RateLimit(app)
    toml = tmp_path / "bad.toml"
    toml.write_text('headers = "loud"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: headers"):
        RateLimit(Flask(__name__), config=toml)


def test_on_reject_and_shaping_delay(memory: MemoryBackend) -> None:
    """A custom on_reject reply is used by view limits; shaping waits through ext.sleep."""

    def teapot(request: RequestInfo, decision: Decision) -> Reply:
        return Reply(418, [(b"content-type", b"text/plain")], b"slow down")

    app = Flask(__name__)

    @app.get("/shaped")
    @limit("1/second", name="shaped", algorithm="leaky_bucket", burst=3)
    def shaped() -> ResponseReturnValue:
        return "shaped"

    ext = RateLimit(app, backend=memory, on_reject=teapot)
    sleeps = SleepRecorder()
    ext.sleep = sleeps  # type: ignore[method-assign]
    codes = statuses(app.test_client(), "/shaped", 4)
    assert codes == [200, 200, 200, 418]
    assert sleeps.delays == [1.0, 2.0]
    assert app.test_client().get("/shaped", environ_base=ENV).data == b"slow down"


def test_without_extension_a_default_engine_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A limited view on an app without RateLimit is still limited (shared memory engine)."""
    monkeypatch.setattr(flask_contrib, "_default", None)
    app = Flask(__name__)

    @app.get("/bare")
    @limit("1/minute", name="bare")
    def bare() -> ResponseReturnValue:
        return "bare"

    assert statuses(app.test_client(), "/bare", 2) == [200, 429]


def test_waitress_server_with_script_name_mount(memory: MemoryBackend) -> None:
    """Through waitress, mounted under /mount: the view limit and the config rule apply,
    and a HEAD rejection carries headers but no body."""
    app, _ = make_app(backend=memory)
    mounted = DispatcherMiddleware(lambda e, s: [], {"/mount": app.wsgi_app})
    with wsgi_server(mounted) as url, httpx.Client(base_url=url) as client:
        items = [client.get("/mount/items") for _ in range(3)]
        heads = [client.head("/mount/things/") for _ in range(3)]
        logins = [client.post("/mount/login") for _ in range(3)]
    assert [r.status_code for r in items] == [200, 200, 429]
    assert items[2].headers["content-type"] == "application/problem+json"
    assert items[2].json()["status"] == 429
    assert [r.status_code for r in heads] == [200, 200, 429]
    assert heads[2].content == b"" and heads[2].headers["retry-after"] == "60"
    assert [r.status_code for r in logins] == [200, 200, 429]
