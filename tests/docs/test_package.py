"""The package metadata keeps its promises: one version, documented extras."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

import ratelimit
from tests.docs._markdown import DOCS, ROOT, code_spans

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_version_lives_in_pyproject_only() -> None:
    """``ratelimit.__version__`` is the installed distribution's, which is pyproject's."""
    assert ratelimit.__version__ == version("ratelimit-middleware")
    assert ratelimit.__version__ == PYPROJECT["project"]["version"]


def test_every_extra_is_documented() -> None:
    """Each extra of pyproject.toml has a row in the install table of getting started."""
    text = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    table_rows = {m.group(1) for m in re.finditer(r"^\| `([a-z0-9-]+)` \|", text, re.M)}
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    assert extras - table_rows == set()
    assert extras <= code_spans(text)


def test_the_classifiers_name_each_supported_python_and_framework() -> None:
    """Python 3.11–3.13 and the frameworks with a trove classifier are declared."""
    declared = set(PYPROJECT["project"]["classifiers"])
    for wanted in (
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Framework :: AsyncIO",
        "Framework :: Django",
        "Framework :: FastAPI",
        "Framework :: Flask",
    ):
        assert wanted in declared
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"


def test_ci_runs_every_declared_python_and_django_6() -> None:
    """.ci/run tests every Python the classifiers declare (3.11 as its base, the others with
    ``run_on``), and Django 6.x, which the classifiers name, on Python 3.12."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    declared = {
        c.rsplit(" :: ", 1)[1]
        for c in PYPROJECT["project"]["classifiers"]
        if c.startswith("Programming Language :: Python :: 3.")
    }
    assert declared == {"3.11", "3.12", "3.13"}
    assert "Python 3.11" in script.splitlines()[1]
    for python in declared - {"3.11"}:
        assert f"\nrun_on {python} " in script, python
    assert '\nrun_on 3.12 "django>=6,<7" --\n' in script
    assert "Framework :: Django :: 6.0" in PYPROJECT["project"]["classifiers"]
