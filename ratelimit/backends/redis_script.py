"""What the Redis backend sends and receives, shared by its sync and asyncio paths (no I/O).

* the Lua script, assembled from ``lua/decide.lua`` and one ``lua/<algorithm>.lua`` per
  algorithm (shipped inside the package, read with :mod:`importlib.resources`);
* the Redis key of a (client key, limit): ``prefix + "{" + tag + "}" + limit hash``, where the
  16-character tag is a BLAKE2b hash (96 bits) of the client key in URL-safe base64 — so all
  the keys of one decision share a Cluster hash slot, and no client key (``{``, ``}``, binary
  bytes, any length) can pick the slot or break the key;
* the script argument of each limit (computed once per :class:`~ratelimit.Limit`), and the
  decoding of the script's reply into :class:`~ratelimit.Decision` objects, built the way the
  Python algorithms build them (times come back as integer ms and are divided by 1000).
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

from ratelimit.decision import INF, Decision, new_decision
from ratelimit.limits import Limit

__all__ = [
    "CHARGE_SCRIPT",
    "CHARGE_SHA",
    "HEAD_ARGS",
    "SCRIPT",
    "SCRIPT_SHA",
    "SHARE_SCRIPT",
    "SHARE_SHA",
    "LimitSpec",
    "charge_args",
    "decode",
    "key_tag",
    "limit_spec",
    "read_lua",
    "script_args",
]

#: How many ARGV values come before the per-limit ones (clock, cost, consume, TTL pad).
HEAD_ARGS = 4

_CODES = {
    "fixed_window": 1,
    "sliding_window": 2,
    "sliding_log": 3,
    "token_bucket": 4,
    "leaky_bucket": 5,  # shape; police is 6
}
_MARKER = "-- @algorithms"


def _indent(text: str, prefix: str) -> str:
    return "".join(prefix + line if line.strip() else line for line in text.splitlines(True))


_INCLUDE = re.compile(r"^( *)-- @include (\w+\.lua)\n", re.MULTILINE)


def read_lua(name: str) -> str:
    """lua/<name>, each ``-- @include <file>`` line replaced by that file (indented alike):
    code that two scripts share, written once and put in place, with no function to call."""
    lua = resources.files("ratelimit.backends").joinpath("lua")
    text = lua.joinpath(name).read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda m: _indent(read_lua(m.group(2)), m.group(1)), text)


def _load_script() -> str:
    """decide.lua with one branch per algorithm file, on the code each limit carries."""
    lua = resources.files("ratelimit.backends").joinpath("lua")
    dispatcher = lua.joinpath("decide.lua").read_text(encoding="utf-8")
    divide = lua.joinpath("divide.lua").read_text(encoding="utf-8")
    branches: list[str] = []
    for name, code in _CODES.items():
        body = read_lua(f"{name}.lua")
        if "fdiv(" in body or "cdiv(" in body:
            body = divide + body
        test = f"code == {code}"
        if name == "leaky_bucket":
            test += " or code == 6"
            body = "local police = code == 6\n" + body
        keyword = "if" if not branches else "elseif"
        branches.append(f"{keyword} {test} then\n{_indent(body, '  ')}")
    pattern = re.compile(rf"^( *){re.escape(_MARKER)}\n", re.MULTILINE)
    chain = "".join(branches) + "end\n"
    script, found = pattern.subn(lambda m: _indent(chain, m.group(1)), dispatcher)
    if not found:
        raise RuntimeError(f"decide.lua has no {_MARKER!r} line")
    return script


#: The whole Lua script (dispatcher and the five algorithms), for a real Redis.
SCRIPT = _load_script()
#: Its SHA-1, for ``EVALSHA``.
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode(), usedforsecurity=False).hexdigest()


def _with_divide(name: str) -> str:
    """lua/<name> with lua/divide.lua in place of its ``-- @divide`` line."""
    lua = resources.files("ratelimit.backends").joinpath("lua")
    script = read_lua(name)
    divide = lua.joinpath("divide.lua").read_text(encoding="utf-8")
    pattern = re.compile(r"^-- @divide\b.*\n", re.MULTILINE)
    script, found = pattern.subn(lambda _: divide, script)
    if not found:
        raise RuntimeError(f"{name} has no '-- @divide' line")
    return script


#: The script of shares (:mod:`ratelimit.backends.shares`) and its SHA-1.
SHARE_SCRIPT = _with_divide("share.lua")
SHARE_SHA = hashlib.sha1(SHARE_SCRIPT.encode(), usedforsecurity=False).hexdigest()
#: The script of charges (``charge`` rules: the cost known after the response) and its SHA-1.
CHARGE_SCRIPT = _with_divide("charge.lua")
CHARGE_SHA = hashlib.sha1(CHARGE_SCRIPT.encode(), usedforsecurity=False).hexdigest()


def _width(n: int) -> int:
    """Bytes for an unsigned field holding values up to ``n``."""
    return max(1, (n.bit_length() + 7) // 8)


class LimitSpec:
    """A limit as the script sees it: its key suffix, its six values (``args``, as text) sent
    as one binary script argument (``arg``: ``>BddddB`` — code, limit, period, capacity, max
    wait, the format's length — then the format), and the ``span`` of its integer replies
    (2 more than the largest reset or retry in ms it can report)."""

    __slots__ = ("arg", "args", "capacity", "limit", "span", "suffix")

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.capacity = limit.capacity
        digest = hashlib.blake2b(limit.id.encode(), digest_size=6).digest()
        self.suffix = base64.urlsafe_b64encode(digest)[:6]
        rate = limit.rate
        algorithm = limit.algorithm
        code = _CODES[algorithm]
        max_wait = -1
        # The windows store one decimal number, the window index followed by the counts, each
        # as many digits as the limit has: Redis keeps such a value as an integer (8 bytes in
        # the object itself). Elsewhere, times are 6-byte struct fields (ms up to 2**48, the
        # year 10889) and counts and scaled levels use the fewest bytes that hold their
        # maximum, so a bucket's state is 7 to 12 bytes (one 32-byte allocation).
        period = rate.period_ms
        if algorithm in ("fixed_window", "sliding_window"):
            fmt = str(10 ** len(str(rate.limit)))  # the scale of the counts' digits
            self.span = (2 if algorithm == "sliding_window" else 1) * period + 2
        elif algorithm == "sliding_log":
            fmt = f">I6I{_width(rate.limit)}"
            self.span = period + 2
        else:
            fmt = f">I6I{_width(limit.capacity * period)}"
            self.span = -(-limit.capacity * period // rate.limit) + 2
            if algorithm == "leaky_bucket":
                if limit.mode == "police":
                    code = 6
                wait = getattr(limit.impl, "_max_wait", None)
                if wait is not None:
                    max_wait = wait
        self.args: tuple[bytes, ...] = tuple(
            str(v).encode()
            for v in (code, rate.limit, rate.period_ms, limit.capacity, fmt, max_wait)
        )
        self.arg = (
            struct.pack(
                ">BddddB", code, rate.limit, rate.period_ms, limit.capacity, max_wait, len(fmt)
            )
            + fmt.encode()
        )


_specs: dict[int, tuple[Limit, LimitSpec]] = {}


def limit_spec(limit: Limit) -> LimitSpec:
    """The (cached) :class:`LimitSpec` of ``limit``."""
    entry = _specs.get(id(limit))
    if entry is not None and entry[0] is limit:
        return entry[1]
    spec = LimitSpec(limit)
    if len(_specs) > 4096:
        _specs.clear()
    _specs[id(limit)] = (limit, spec)  # the entry keeps the Limit alive, so its id is stable
    return spec


@lru_cache(maxsize=65536)
def key_tag(key: str | bytes) -> bytes:
    """``{`` + 16 URL-safe base64 characters of BLAKE2b(client key) + ``}``."""
    raw = key.encode("utf-8", "surrogatepass") if isinstance(key, str) else bytes(key)
    return b"{" + base64.urlsafe_b64encode(hashlib.blake2b(raw, digest_size=12).digest()) + b"}"


_CONSUME = {True: b"1", False: b"0"}
_COSTS = [b"%d" % i for i in range(64)]


def script_args(
    specs: Sequence[LimitSpec], now: bytes, cost: int | bytes, consume: bool, pad: bytes
) -> list[bytes]:
    """ARGV for the script: clock, cost, consume flag, TTL pad, then one argument per limit.

    ``cost`` is one cost for every limit, or (``decide_each``) the costs of the limits in
    order, already written as ``b"1,5,1"``.
    """
    if not isinstance(cost, bytes):
        cost = _COSTS[cost] if cost < 64 else b"%d" % cost
    if len(specs) == 1:
        return [now, cost, _CONSUME[consume], pad, specs[0].arg]
    return [now, cost, _CONSUME[consume], pad, *[spec.arg for spec in specs]]


def charge_args(
    specs: Sequence[LimitSpec], now: bytes, delta: int, elapsed_ms: int, pad: bytes
) -> list[bytes]:
    """ARGV for the charge script: clock, delta, ms since the decision, TTL pad, limits."""
    return [now, b"%d" % delta, b"%d" % max(0, elapsed_ms), pad, *[spec.arg for spec in specs]]


def decode(specs: Sequence[LimitSpec], reply: Any) -> list[Decision]:
    """The script's reply as one :class:`Decision` per limit: for one limit a value, for
    several a list of them, each an integer (admitted: ``remaining * span + reset``; rejected:
    ``-1 - ((remaining * span + reset) * span + retry + 1)``) or, when that would not fit
    below 2^53 or there is a delay, ``b"allowed remaining reset retry delay"``."""
    if len(specs) == 1:
        return [_decision(specs[0], reply)]
    return [_decision(spec, value) for spec, value in zip(specs, reply, strict=True)]


def _decision(spec: LimitSpec, value: Any) -> Decision:
    if type(value) is int:
        span = spec.span
        if value >= 0:
            remaining, reset = divmod(value, span)
            return new_decision(
                (True, spec.capacity, remaining, reset / 1000, 0.0, 0.0, spec.limit)
            )
        rest, retry = divmod(-1 - value, span)
        remaining, reset = divmod(rest, span)
        wait = INF if retry == 0 else (retry - 1) / 1000
        return new_decision((False, spec.capacity, remaining, reset / 1000, wait, 0.0, spec.limit))
    allowed, remaining, reset, retry, delay = value.split()
    wait = int(retry)
    return new_decision(
        (
            allowed == b"1",
            spec.capacity,
            int(remaining),
            int(reset) / 1000,
            INF if wait < 0 else wait / 1000,
            0.0 if delay == b"0" else float(delay),
            spec.limit,
        )
    )
