"""A Flask app limited by ``examples/ratelimit.toml`` through the WSGI middleware.

Run from the repository root::

    flask --app examples.flask_app run
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from ratelimit.wsgi import RateLimitMiddleware

CONFIG = Path(__file__).with_name("ratelimit.toml")

app = Flask(__name__)
app.wsgi_app = RateLimitMiddleware(app.wsgi_app, config=CONFIG)  # type: ignore[method-assign]


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
