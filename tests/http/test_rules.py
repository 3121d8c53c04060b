"""Rule matching: exact paths, *, **, {param}, methods, normalisation, order and exempt."""

from __future__ import annotations

import pytest

from ratelimit import MemoryBackend
from ratelimit.http.config import load_config
from ratelimit.http.engine import Engine


def engine(*rules: dict[str, object]) -> Engine:
    return Engine({"rules": list(rules)}, backend=MemoryBackend())


def matched(eng: Engine, method: str, path: str) -> list[str]:
    plan = eng.plan(method, path)
    return [] if plan is None else [rule.name for rule in plan.rules]


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("/auth/login", "/auth/login", True),
        ("/auth/login", "/auth/login/", True),
        ("/auth/login", "//auth//login", True),
        ("/auth/login", "/auth/login/x", False),
        ("/auth/login", "/auth/logi", False),
        ("/auth/login", "/AUTH/login", False),
        ("/users/*", "/users/42", True),
        ("/users/*", "/users/42/posts", False),
        ("/users/*", "/users", False),
        ("/users/*/posts", "/users/7/posts", True),
        ("/users/{id}/posts", "/users/7/posts", True),
        ("/users/{id}/posts", "/users//posts", False),
        ("/users/{id}", "/users/a.b-c", True),
        ("/api/**", "/api", True),
        ("/api/**", "/api/", True),
        ("/api/**", "/api/v1/items/3", True),
        ("/api/**", "/apix", False),
        ("/api/**", "/other/api/x", False),
        ("/**", "/", True),
        ("/**", "/anything/at/all", True),
        ("/a/**/z", "/a/z", True),
        ("/a/**/z", "/a/b/c/z", True),
        ("/a/**/z", "/a/b/c", False),
        ("/files/*.txt", "/files/x.txt", None),
        ("/", "/", True),
        ("/", "/x", False),
        ("/dots/a.b", "/dots/aXb", False),
    ],
)
def test_path_patterns(pattern: str, path: str, hit: bool | None) -> None:
    """Each pattern matches exactly the documented paths (None: the pattern is invalid)."""
    if hit is None:
        with pytest.raises(ValueError, match="whole segments"):
            engine({"name": "r", "path": pattern, "limit": "1/s"})
        return
    eng = engine({"name": "r", "path": pattern, "limit": "1/s"})
    assert (matched(eng, "GET", path) == ["r"]) is hit


def test_methods_and_head_follow_get() -> None:
    """A method list limits only those methods; GET also covers HEAD."""
    eng = engine(
        {"name": "post", "path": "/x", "methods": ["POST"], "limit": "1/s"},
        {"name": "get", "path": "/x", "methods": ["get"], "limit": "1/s"},
    )
    assert matched(eng, "POST", "/x") == ["post"]
    assert matched(eng, "GET", "/x") == ["get"]
    assert matched(eng, "HEAD", "/x") == ["get"]
    assert matched(eng, "DELETE", "/x") == []


def test_every_matching_rule_applies_in_order_and_exempt_stops_the_walk() -> None:
    """All matching rules apply in order; a matching exempt rule stops the walk."""
    eng = engine(
        {"name": "all", "path": "/**", "limit": "100/s"},
        {"path": "/healthz", "exempt": True},
        {"name": "api", "path": "/api/**", "limit": "10/s"},
        {"name": "item", "path": "/api/items/{id}", "limit": "1/s"},
    )
    assert matched(eng, "GET", "/api/items/3") == ["all", "api", "item"]
    assert matched(eng, "GET", "/healthz") == ["all"]
    eng2 = engine(
        {"path": "/healthz", "exempt": True}, {"name": "all", "path": "/**", "limit": "1/s"}
    )
    assert eng2.plan("GET", "/healthz") is None
    assert matched(eng2, "GET", "/other") == ["all"]


def test_plans_are_compiled_once_and_cached() -> None:
    """The same (method, path) gets the same plan object: nothing is recompiled per request."""
    eng = engine({"name": "r", "path": "/users/{id}", "limit": "1/s"})
    first = eng.plan("GET", "/users/1")
    assert first is eng.plan("GET", "/users/1")
    assert first is eng.plan("GET", "/users/2")  # same rules -> same plan
    assert eng.plan("GET", "/nope") is None


def test_plan_cache_is_bounded() -> None:
    """The per-path plan cache does not grow without bound under random paths."""
    eng = engine({"name": "r", "path": "/users/{id}", "limit": "1/s"})
    for i in range(10_000):
        eng.plan("GET", f"/users/{i}")
    assert len(eng._plans) <= 4096


def test_rule_limits_get_distinct_ids_per_rule() -> None:
    """Two rules with identical limits still count separately (ids derive from rule names)."""
    config = load_config(
        {
            "rules": [
                {"name": "a", "path": "/a", "limit": "1/s"},
                {"name": "b", "path": "/b", "limit": "1/s"},
            ]
        }
    )
    assert config.rules[0].limits[0].id == "a"
    assert config.rules[1].limits[0].id == "b"
