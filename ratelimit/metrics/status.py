"""The status page (``[metrics] status_path``): what the limiter is doing, and to whom.

The adapters answer ``status_path`` before any rule is matched, so the page is never rate
limited itself, and only to peers inside ``status_allow`` (default: loopback); anyone else
gets a plain 404. The direct peer address is checked, never a forwarding header.

``Accept: application/json`` gets JSON (:meth:`StatusPage.data`); anything else a small
self-contained HTML page — no script, no CDN, inline CSS and SVG — that reloads itself every
:data:`REFRESH` seconds: per rule, the counts by outcome over the last 1, 5 and 15 minutes,
a sparkline of admitted and rejected requests per 10 seconds over 15 minutes, and the top
rejected identities; the backend's health; the config's origin and load time.

The counts are this process's (one worker of several sees its own share); the top
offenders come from Redis, merged across workers, when the backend is Redis.
"""

from __future__ import annotations

import html
import json
import os
from datetime import UTC, datetime
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any

from ratelimit.errors import BackendError
from ratelimit.http.headers import Reply

if TYPE_CHECKING:
    from ratelimit.http.engine import Engine
    from ratelimit.metrics.config import MetricsConfig
    from ratelimit.metrics.observer import Recorder

__all__ = [
    "REFRESH",
    "WINDOWS",
    "StatusPage",
    "adjango_reply",
    "asgi_reply",
    "django_reply",
    "wsgi_reply",
]

#: Seconds between the HTML page's reloads.
REFRESH = 5
#: The count windows, seconds.
WINDOWS = (("1m", 60), ("5m", 300), ("15m", 900))
_TOP_N = 10
#: How many (rule, identity) rows are read to pick each rule's top ``_TOP_N``.
_ALL = 1000
#: The top offenders and, when Redis failed, why they are this process's only.
_Top = tuple[list[tuple[str, str, int]], str | None]
_NOT_FOUND = Reply(
    404, [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"9")], b"Not Found"
)
_NO_STORE = (b"cache-control", b"no-store")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _redact(url: str) -> str:
    from ratelimit.backends.redis_url import redact

    return redact(url)


class StatusPage:
    """Renders the status page of one engine; built by
    :func:`~ratelimit.metrics.build_observer` when ``status_path`` is set.

    Attributes:
        path: the path it answers (compared with the path below the mount point).
    """

    def __init__(self, engine: Engine, recorder: Recorder, config: MetricsConfig) -> None:
        self.engine = engine
        self.recorder = recorder
        self.path: str = config.status_path or "/_ratelimit"
        self.networks = config.networks()

    def allows(self, peer: str | None) -> bool:
        """Whether ``peer`` (an address, or ``None`` when unknown) may see the page."""
        if not peer:
            return False
        try:
            address = ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        return any(address.version == net.version and address in net for net in self.networks)

    async def arespond(self, method: str, peer: str | None, accept: str | None) -> Reply:
        """:meth:`respond` for asyncio code: the top offenders are read from Redis with the
        asyncio client (the event loop is not blocked)."""
        if not self.allows(peer):
            return _NOT_FOUND
        return self.respond(method, peer, accept, top=await self._atop())

    def respond(
        self, method: str, peer: str | None, accept: str | None, *, top: _Top | None = None
    ) -> Reply:
        """The reply to a request for :attr:`path`: 404 outside ``status_allow``, else JSON
        or HTML (by ``Accept``); ``HEAD`` without a body, other methods than GET/HEAD 405.
        ``top``: the top offenders read beforehand (else read here, blocking on Redis)."""
        if not self.allows(peer):
            return _NOT_FOUND
        method = method.upper()
        if method not in ("GET", "HEAD"):
            return Reply(
                405,
                [(b"allow", b"GET, HEAD"), (b"content-length", b"0"), _NO_STORE],
                b"",
            )
        wants_json = accept is not None and "json" in accept and "text/html" not in accept
        if wants_json:
            body = json.dumps(self.data(top=top), indent=1).encode()
            ctype = b"application/json"
        else:
            body = self.html(top=top).encode()
            ctype = b"text/html; charset=utf-8"
        headers = [
            (b"content-type", ctype),
            (b"content-length", str(len(body)).encode()),
            _NO_STORE,
            (b"vary", b"accept"),
        ]
        return Reply(200, headers, b"" if method == "HEAD" else body)

    # -- data ------------------------------------------------------------------------------

    def _top(self) -> _Top:
        redis_top = self.recorder.redis_top
        if redis_top is None:
            return self.recorder.top.top(None, _ALL), None
        try:
            return redis_top.top(None, _ALL), None
        except BackendError as exc:  # a failing Redis: show the local view and say so
            return self.recorder.top.top(None, _ALL), str(exc)

    async def _atop(self) -> _Top:
        redis_top = self.recorder.redis_top
        if redis_top is None:
            return self.recorder.top.top(None, _ALL), None
        try:
            return await redis_top.atop(None, _ALL), None
        except BackendError as exc:
            return self.recorder.top.top(None, _ALL), str(exc)

    def data(self, *, top: _Top | None = None) -> dict[str, Any]:
        """Everything the page shows, as JSON-ready data (``top``: see :meth:`respond`)."""
        from ratelimit.metrics.observer import ADMITTED, REJECTED

        recorder, engine = self.recorder, self.engine
        window = recorder.window
        counts = {label: window.counts(seconds) if window else {} for label, seconds in WINDOWS}
        rows, top_error = top if top is not None else self._top()
        rules = []
        for rule in engine.rules:
            if rule.exempt:
                continue
            info = rule.describe()
            rules.append(
                {
                    "name": rule.name,
                    "path": rule.path,
                    "methods": info["methods"],
                    "limits": info["limits"],
                    "counts": {label: counts[label].get(rule.name, {}) for label, _ in WINDOWS},
                    "series": {
                        "bucket_seconds": window.width if window else 0,
                        "admitted": window.series(rule.name, ADMITTED) if window else [],
                        "rejected": window.series(rule.name, REJECTED) if window else [],
                    },
                    "top": [
                        {"identity": identity, "rejections": n}
                        for name, identity, n in rows
                        if name == rule.name
                    ][:_TOP_N],
                }
            )
        config = engine.config
        breaker = getattr(engine.backend, "breaker", None)
        return {
            "generated_at": _iso(recorder.clock()),
            "pid": os.getpid(),
            "config": {
                "source": config.source,
                "loaded_at": _iso(recorder.config_loaded_at()),
                "rules": len(engine.rules),
                "shadow": config.shadow,
                "on_error": config.on_error,
            },
            "backend": {
                "kind": recorder.backend,
                "url": _redact(config.backend),
                "up": recorder.backend_up(),
                "failed_decisions": breaker.failed_decisions if breaker is not None else 0,
                "last_error_kind": getattr(engine.backend, "last_error_kind", None),
                "errors": dict(sorted(recorder.errors.items())),
            },
            "top_source": "redis" if recorder.redis_top and top_error is None else "process",
            "top_error": top_error,
            "rules": rules,
        }

    # -- HTML ------------------------------------------------------------------------------

    def html(self, *, top: _Top | None = None) -> str:
        """The self-contained HTML page (``top``: see :meth:`respond`)."""
        data = self.data(top=top)
        esc = html.escape
        backend = data["backend"]
        up = backend["up"]
        errors = ", ".join(f"{k} {v}" for k, v in backend["errors"].items()) or "none"
        parts = [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="refresh" content="{REFRESH}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>ratelimit status</title>",
            f"<style>{_CSS}</style></head><body>",
            "<header><h1>ratelimit status</h1>",
            f'<p class="meta">generated {esc(data["generated_at"])} by pid {data["pid"]}; '
            f"reloads every {REFRESH} s</p></header>",
            '<section class="cards">',
            f'<div class="card" id="backend"><h2>backend</h2><p class="health '
            f'{"up" if up else "down"}">{"up" if up else "DOWN"}</p>'
            f"<p>{esc(backend['kind'])} <code>{esc(backend['url'])}</code></p>"
            f"<p>errors since start: {esc(errors)}</p></div>",
            f'<div class="card" id="config"><h2>config</h2>'
            f"<p><code>{esc(str(data['config']['source']))}</code></p>"
            f"<p>loaded {esc(data['config']['loaded_at'])}</p>"
            f"<p>{data['config']['rules']} rules, on_error "
            f"{esc(str(data['config']['on_error']))}"
            f"{', shadow mode' if data['config']['shadow'] else ''}</p></div>",
            "</section>",
        ]
        for rule in data["rules"]:
            parts.append(_rule_html(rule, data["top_source"]))
        if not data["rules"]:
            parts.append("<p>No rules.</p>")
        parts.append(
            '<footer><span class="key admitted"></span> admitted '
            '<span class="key rejected"></span> rejected, per 10 s over 15 min; counts are '
            "this process's.</footer></body></html>"
        )
        return "\n".join(parts)


def _sparkline(admitted: list[int], rejected: list[int], rule: str) -> str:
    """An inline SVG with one polyline per series (same vertical scale)."""
    width, height, pad = 360, 56, 3
    peak = max([1, *admitted, *rejected])
    n = max(len(admitted), 1)
    step = (width - 2 * pad) / max(n - 1, 1)

    def points(values: list[int]) -> str:
        return " ".join(
            f"{pad + i * step:.1f},{height - pad - (v / peak) * (height - 2 * pad):.1f}"
            for i, v in enumerate(values)
        )

    return (
        f'<svg class="spark" data-rule="{html.escape(rule)}" data-peak="{peak}" '
        f'data-admitted="{sum(admitted)}" data-rejected="{sum(rejected)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="admitted and rejected per 10 s over 15 minutes">'
        f'<rect x="0" y="0" width="{width}" height="{height}" class="bg"/>'
        f'<polyline class="admitted" points="{points(admitted)}"/>'
        f'<polyline class="rejected" points="{points(rejected)}"/>'
        f'<text x="{width - pad}" y="12" text-anchor="end">peak {peak}/10s</text></svg>'
    )


def _rule_html(rule: dict[str, Any], top_source: str) -> str:
    esc = html.escape
    kinds = sorted({k for counts in rule["counts"].values() for k in counts})
    header = "".join(f"<th>{esc(k)}</th>" for k in kinds)
    rows = "".join(
        f"<tr><th>{label}</th>"
        + "".join(f"<td>{rule['counts'][label].get(k, 0)}</td>" for k in kinds)
        + "</tr>"
        for label, _ in WINDOWS
    )
    counts = (
        f'<table class="counts"><tr><th></th>{header}</tr>{rows}</table>'
        if kinds
        else '<p class="quiet">no requests in 15 minutes</p>'
    )
    top = rule["top"]
    offenders = (
        '<table class="top"><tr><th>identity</th><th>rejections</th></tr>'
        + "".join(
            f"<tr><td><code>{esc(t['identity'])}</code></td><td>{t['rejections']}</td></tr>"
            for t in top
        )
        + "</table>"
        if top
        else '<p class="quiet">nobody rejected</p>'
    )
    series = rule["series"]
    methods = ",".join(rule["methods"]) if rule["methods"] else "any method"
    return (
        f'<section class="rule" data-rule="{esc(rule["name"])}">'
        f"<h2>{esc(rule['name'])} <small><code>{esc(rule['path'])}</code> {esc(methods)}, "
        f"{esc('; '.join(rule['limits']))}</small></h2>"
        f'<div class="row"><div>{_sparkline(series["admitted"], series["rejected"], rule["name"])}'
        f"{counts}</div><div><h3>top rejected ({esc(top_source)}, 15 min)</h3>{offenders}</div>"
        "</div></section>"
    )


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0}h2{font-size:1.1em;margin:.2em 0}h3{font-size:.95em;margin:0}
small{font-weight:normal;color:#555}.meta,.quiet,footer{color:#666}
.cards{display:flex;gap:1em;flex-wrap:wrap;margin:1em 0}
.card,.rule{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em 1em}
.card{min-width:18em}.card p{margin:.2em 0}.rule{margin:1em 0}
.row{display:flex;gap:2em;flex-wrap:wrap}
.health{font-weight:bold;font-size:1.2em}.up{color:#1a7f37}.down{color:#cf222e}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:.1em .6em;text-align:right}
.top td:first-child{text-align:left}th{color:#555;font-weight:600}
svg.spark .bg{fill:#f4f6f8}svg.spark polyline{fill:none;stroke-width:1.6}
svg.spark text{font-size:10px;fill:#777}
.admitted{stroke:#1a7f37;background:#1a7f37}.rejected{stroke:#cf222e;background:#cf222e}
.key{display:inline-block;width:.8em;height:.8em;border-radius:2px;vertical-align:middle}
"""


async def asgi_reply(page: StatusPage, scope: Any) -> Reply:
    """The status reply to an ASGI HTTP scope."""
    accept = None
    for name, value in scope.get("headers") or ():
        if name.lower() == b"accept":
            accept = value.decode("latin-1")
    client = scope.get("client")
    return await page.arespond(scope["method"], client[0] if client else None, accept)


def wsgi_reply(page: StatusPage, environ: Any) -> Reply:
    """The status reply to a WSGI request."""
    return page.respond(
        environ["REQUEST_METHOD"], environ.get("REMOTE_ADDR"), environ.get("HTTP_ACCEPT")
    )


def django_reply(page: StatusPage, request: Any) -> Reply:
    """The status reply to a Django request (sync views)."""
    meta = request.META
    return page.respond(request.method or "GET", meta.get("REMOTE_ADDR"), meta.get("HTTP_ACCEPT"))


async def adjango_reply(page: StatusPage, request: Any) -> Reply:
    """The status reply to a Django request (async middleware)."""
    meta = request.META
    return await page.arespond(
        request.method or "GET", meta.get("REMOTE_ADDR"), meta.get("HTTP_ACCEPT")
    )
