"""A FastAPI app limited by ``examples/ratelimit.toml``.

Run from the repository root::

    uvicorn examples.fastapi_app:app
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from pydantic import BaseModel

from ratelimit.asgi import RateLimitMiddleware
from ratelimit.contrib.starlette import limit

CONFIG = Path(__file__).with_name("ratelimit.toml")

app = FastAPI()
app.add_middleware(RateLimitMiddleware, config=CONFIG)


class Credentials(BaseModel):
    username: str
    password: str


@app.get("/")
async def home() -> dict[str, str]:
    return {"hello": "FastAPI"}


@app.post("/auth/login")
async def login(credentials: Credentials) -> dict[str, str]:
    return {"token": f"demo-{credentials.username}"}


@app.get("/api/items")
async def items() -> dict[str, list[int]]:
    return {"items": [1, 2, 3]}


@app.post("/upload/{bucket}")
async def upload(bucket: str) -> dict[str, str | bool]:
    return {"bucket": bucket, "stored": True}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/report")
@limit("3/minute", name="report")  # a per-endpoint limit declared in code
async def report() -> dict[str, str]:
    return {"report": "expensive"}
