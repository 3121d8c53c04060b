"""A Flask app limited by ``examples/ratelimit.toml`` through the :class:`RateLimit` extension.

Run from the repository root::

    flask --app examples.flask_app run

The config's rules apply to every request (the extension wraps ``app.wsgi_app`` in the WSGI
middleware); ``/report`` adds a per-view limit declared in code, on the same engine.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from ratelimit.contrib.flask import RateLimit, limit

app = Flask(__name__)
app.config["RATELIMIT"] = Path(__file__).with_name("ratelimit.toml")  # or a dict of that shape
rate_limit = RateLimit(app)


@app.get("/")
def home() -> ResponseReturnValue:
    return "Hello from Flask\n"


@app.post("/auth/login")
def login() -> ResponseReturnValue:
    return jsonify(token="demo")


@app.get("/api/items")
def items() -> ResponseReturnValue:
    return jsonify(items=[1, 2, 3])


@app.post("/upload/<bucket>")
def upload(bucket: str) -> ResponseReturnValue:
    return jsonify(bucket=bucket, stored=True)


@app.get("/healthz")
def healthz() -> ResponseReturnValue:
    return "ok\n"


@app.get("/report")
@limit("3/minute", name="report")  # a per-view limit declared in code, under @app.route
def report() -> ResponseReturnValue:
    return jsonify(report="expensive")
