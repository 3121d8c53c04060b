"""The configuration reference documents every key the config loader accepts."""

from __future__ import annotations

import re

import pytest

from ratelimit.http import config
from tests.docs._markdown import DOCS, code_spans

REFERENCE = DOCS / "configuration.md"


def key_tables() -> dict[str, tuple[str, ...]]:
    """The loader's tables of valid keys: ``_TOP_KEYS``, ``_RULE_KEYS`` and any other
    ``_..._KEYS`` tuple it has (a table added later is checked too)."""
    tables = {
        name: value
        for name, value in vars(config).items()
        if re.fullmatch(r"_[A-Z_]*KEYS", name) and isinstance(value, tuple)
    }
    assert {"_TOP_KEYS", "_RULE_KEYS"} <= tables.keys()
    return tables


def undocumented(keys: tuple[str, ...], text: str) -> list[str]:
    """The ``keys`` that ``text`` never shows as inline code (`` `key` ``)."""
    spans = code_spans(text)
    return [key for key in keys if key not in spans]


@pytest.mark.parametrize("table", sorted(key_tables()))
def test_every_config_key_is_documented(table: str) -> None:
    """A key accepted by the loader but missing from docs/configuration.md fails."""
    keys = key_tables()[table]
    assert keys, f"{table} is empty"
    assert undocumented(keys, REFERENCE.read_text(encoding="utf-8")) == []


def test_a_key_mentioned_only_in_prose_or_a_code_block_does_not_count() -> None:
    """Only a code-formatted key counts: plain words and fenced examples do not document it."""
    text = "The timeout key.\n\n```toml\nreload = true\n```\n\n| `backend` | ... |\n"
    assert undocumented(("backend", "timeout", "reload"), text) == ["timeout", "reload"]
