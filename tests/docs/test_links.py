"""Every relative link and image in the README and the docs leads to an existing file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs._markdown import DOCS, ROOT, broken_links, relative_targets

PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    """A link to a file that is not in the repository (a renamed or missing page) fails."""
    assert broken_links(page) == []


def test_the_readme_links_into_the_docs() -> None:
    """The README is a landing page: it links to the docs pages and shows the demo chart."""
    targets = relative_targets((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "docs/demo.png" in targets
    assert "docs/getting-started.md" in targets
    assert "docs/configuration.md" in targets


def test_a_missing_target_is_reported(tmp_path: Path) -> None:
    """The checker finds broken links, images and references, and ignores code and URLs."""
    (tmp_path / "there.md").write_text("# there\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#a-section) [gone](missing.md) ![img](missing.png)\n"
        '[web](https://example.org/x.md) [anchor](#here) <img src="nope.svg">\n'
        "`[code](not-a-link.md)`\n\n```md\n[fenced](fenced.md)\n```\n\n"
        "[ref]: also-missing.md\n"
    )
    assert broken_links(page) == ["missing.md", "missing.png", "also-missing.md", "nope.svg"]
