"""Print pip requirements pinning the lowest versions pyproject.toml admits.

Reads the ``redis`` and ``test`` extras of ``pyproject.toml`` and turns every ``name>=X``
into ``name==X`` (extras such as ``redis[hiredis]`` are kept), for the CI run on the lowest
admitted versions of what the package works with (redis, starlette, django, flask, uvicorn,
fastapi, httpx, websockets, waitress, ...). The tools that run or check the tests
(:data:`TOOLS`: pytest, hypothesis, linters, build tools) are listed without a version, so
that pip picks their newest release compatible with the pins: they test our compatibility,
they are not part of it. Usage::

    python .ci/lowest.py > /tmp/lowest.txt && pip install -r /tmp/lowest.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

#: Test runners, linters and build tools: installed at their newest compatible version.
TOOLS = {"pytest", "pytest-asyncio", "hypothesis", "mypy", "ruff", "locust", "build", "twine"}
_REQ = re.compile(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([^,;\s]+)\s*(;.*)?$")


def lowest(pyproject: Path) -> list[str]:
    """The ``name==lowest`` pins of the ``redis`` and ``test`` extras, one per package
    (tools: the bare name)."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    extras = data["project"]["optional-dependencies"]
    pins: dict[str, str] = {}
    for group in ("redis", "test"):
        for requirement in extras[group]:
            match = _REQ.match(requirement)
            if match is None:
                raise SystemExit(f"{pyproject}: cannot read a lower bound in {requirement!r}")
            name, extra, version, marker = match.groups()
            key = name.lower()
            pin = f"{name}{extra or ''}"
            if key not in TOOLS:
                pin += f"=={version}"
            if marker:
                pin += f" {marker}"
            # The same package in two extras (redis[hiredis] and redis): keep the extras.
            if key not in pins or extra:
                pins[key] = pin
    return sorted(pins.values(), key=str.lower)


def main() -> int:
    path = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "pyproject.toml"
    )
    print("\n".join(lowest(path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
