"""Small Markdown readers for the docs tests: code-formatted words and relative links.

Fenced code blocks and inline code are prose examples, not links, so links are looked for
only outside them; code-formatted words are looked for only inside inline code.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
# [text](target "title") and ![alt](target): the target is the first word in the parentheses.
_INLINE_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
# [label]: target
_REFERENCE = re.compile(r"^[ ]{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
# <img src="..."> and <a href="...">
_HTML = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def without_code(text: str) -> str:
    """``text`` with fenced code blocks and inline code blanked out."""
    text = _FENCE.sub("", text)
    return _INLINE_CODE.sub("", text)


def code_spans(text: str) -> set[str]:
    """Every inline-code word of ``text`` (fenced blocks excluded), backticks stripped."""
    return {match.group(2).strip() for match in _INLINE_CODE.finditer(_FENCE.sub("", text))}


def relative_targets(text: str) -> list[str]:
    """The targets of the links and images in ``text`` that point at files of this repo.

    URLs with a scheme (``https:``, ``mailto:``) and pure ``#anchors`` are left out; the
    ``#anchor`` or ``?query`` of a file link is cut off.
    """
    prose = without_code(text)
    found = [m.group(1) for m in _INLINE_LINK.finditer(prose)]
    found += [m.group(1) for m in _REFERENCE.finditer(prose)]
    found += [m.group(1) for m in _HTML.finditer(prose)]
    targets = []
    for target in found:
        if _SCHEME.match(target) or target.startswith(("#", "//")):
            continue
        path = re.split(r"[#?]", target, maxsplit=1)[0]
        if path:
            targets.append(path)
    return targets


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` that do not lead to an existing file."""
    text = page.read_text(encoding="utf-8")
    return [t for t in relative_targets(text) if not (page.parent / t).resolve().is_file()]
