"""Django system checks: ``manage.py check`` on the example project, and ``run_checks()``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.test import override_settings

from ratelimit import MemoryBackend
from ratelimit.contrib import django as contrib
from ratelimit.contrib.django.checks import check_settings, worker_count
from ratelimit.http.engine import Engine
from tests.http.conftest import FailingBackend

ROOT = Path(__file__).resolve().parents[2]
MANAGE = ROOT / "examples" / "django_project" / "manage.py"
OURS = "ratelimit.contrib.django.RateLimitMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
RULES = {"rules": [{"name": "r", "path": "/x", "limit": "5/minute"}]}
NO_WORKERS = {"WEB_CONCURRENCY": "", "UVICORN_WORKERS": "", "GUNICORN_CMD_ARGS": ""}


def manage_check(tmp_path: Path, settings_body: str | None, **env: str) -> tuple[int, str]:
    """Run the example project's ``manage.py check`` (with extra settings, if given)."""
    environ = {**os.environ, **NO_WORKERS, **env}
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    if settings_body is not None:
        (tmp_path / "check_settings.py").write_text(
            "from project.settings import *  # noqa: F403\n" + settings_body
        )
        environ["DJANGO_SETTINGS_MODULE"] = "check_settings"
        environ["PYTHONPATH"] = os.pathsep.join([str(tmp_path), environ.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(MANAGE), "check"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout + proc.stderr


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


@pytest.fixture(autouse=True)
def no_workers_no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """No worker variables from the outer environment; no engine left by another test."""
    for name in NO_WORKERS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(contrib, "_engine", None)


def test_manage_py_check_passes_on_the_example_project(tmp_path: Path) -> None:
    """The example project, which installs the app, has no issues."""
    code, output = manage_check(tmp_path, None)
    assert code == 0, output
    assert "no issues" in output


def test_manage_py_check_reports_an_invalid_setting(tmp_path: Path) -> None:
    """A bad settings.RATELIMIT fails `manage.py check` with ratelimit.E001 naming the key."""
    body = 'RATELIMIT = {"rules": [{"name": "login", "path": "/login", "limit": "5/fortnight"}]}\n'
    code, output = manage_check(tmp_path, body)
    assert code == 1, output
    assert "(ratelimit.E001) settings.RATELIMIT is not valid: settings.RATELIMIT: " in output
    assert "rules[0].limit" in output and "fortnight" in output


def test_manage_py_check_warns_about_memory_under_workers(tmp_path: Path) -> None:
    """memory:// with gunicorn --workers 3 is a warning (W001): the check still passes."""
    code, output = manage_check(tmp_path, None, GUNICORN_CMD_ARGS="--bind :8000 --workers 3")
    assert code == 0, output
    assert "(ratelimit.W001)" in output and "3 worker processes" in output


def test_run_checks_registers_the_checks_when_the_app_is_installed() -> None:
    """Installing "ratelimit.contrib.django" registers the checks under the ratelimit tag."""
    apps = ["django.contrib.auth", "django.contrib.contenttypes", "ratelimit.contrib.django"]
    with override_settings(INSTALLED_APPS=apps, RATELIMIT={"headers": "loud"}):
        from django.apps import apps as registry

        assert registry.get_app_config("ratelimit").name == "ratelimit.contrib.django"
        assert checks.registry.registry.tag_exists("ratelimit")
        messages = checks.run_checks(tags=["ratelimit"])
    assert ids(messages) == ["ratelimit.E001"]
    assert "headers: must be one of ietf, legacy, both, none" in messages[0].msg


def test_a_toml_path_error_names_the_file(tmp_path: Path) -> None:
    """E001 for a TOML path names the file and the key."""
    toml = tmp_path / "limits.toml"
    toml.write_text('[[rules]]\npath = "/x"\nlimit = "0/minute"\n')
    with override_settings(RATELIMIT=toml):
        (message,) = check_settings()
    assert message.id == "ratelimit.E001"
    assert f"{toml}: rules[0].limit" in message.msg
    with override_settings(RATELIMIT={"backend": "memcached://x"}):
        (message,) = check_settings()
    assert message.id == "ratelimit.E001" and "memcached" in message.msg


def test_rules_without_the_middleware_are_an_error() -> None:
    """Rules with no RateLimitMiddleware in MIDDLEWARE (E002); the middleware twice (E003)."""
    with override_settings(RATELIMIT=RULES, MIDDLEWARE=[SESSIONS, AUTH]):
        assert ids(check_settings()) == ["ratelimit.E002"]
    with override_settings(RATELIMIT={"backend": "memory://"}, MIDDLEWARE=[]):
        assert check_settings() == []  # no rules: decorators alone need no middleware
    with override_settings(RATELIMIT=RULES, MIDDLEWARE=[SESSIONS, AUTH, OURS, OURS]):
        assert ids(check_settings()) == ["ratelimit.E003"]
    with override_settings(RATELIMIT=RULES, MIDDLEWARE=[SESSIONS, AUTH, OURS]):
        assert check_settings() == []


def test_memory_backend_under_several_workers_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    """W001 for memory:// with WEB_CONCURRENCY > 1, not for one worker or a shared backend."""
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    with override_settings(RATELIMIT=RULES):
        (message,) = check_settings()
        assert message.id == "ratelimit.W001" and "WEB_CONCURRENCY=4" in message.msg
        monkeypatch.setattr(contrib, "_engine", Engine(backend=FailingBackend()))  # type: ignore[arg-type]
        assert check_settings() == []  # configure() gave it a non-memory backend
        monkeypatch.setattr(contrib, "_engine", Engine(backend=MemoryBackend()))
        assert ids(check_settings()) == ["ratelimit.W001"]
    with override_settings(RATELIMIT={**RULES, "backend": "redis://localhost:6379/0"}):
        assert check_settings() == []
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    with override_settings(RATELIMIT=RULES):
        assert check_settings() == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WEB_CONCURRENCY": "4"}, 4),
        ({"UVICORN_WORKERS": "2"}, 2),
        ({"WEB_CONCURRENCY": "abc"}, None),
        ({"GUNICORN_CMD_ARGS": "-w 5"}, 5),
        ({"GUNICORN_CMD_ARGS": "--workers=6 --bind :80"}, 6),
        ({"GUNICORN_CMD_ARGS": "-w7"}, 7),
        ({"GUNICORN_CMD_ARGS": "--workers 3", "WEB_CONCURRENCY": "9"}, 3),
        ({"GUNICORN_CMD_ARGS": "--bind ':80"}, None),
    ],
)
def test_worker_count_reads_the_server_variables(env: dict[str, str], expected: int | None) -> None:
    """Workers from WEB_CONCURRENCY, UVICORN_WORKERS or gunicorn's --workers / -w."""
    found = worker_count(env)
    assert (found[0] if found else None) == expected


def test_user_rules_before_authentication_warn() -> None:
    """W002: a user-keyed rule while the middleware runs before AuthenticationMiddleware."""
    config = {"key": "user", **RULES}
    with override_settings(RATELIMIT=config, MIDDLEWARE=[SESSIONS, OURS, AUTH]):
        (message,) = check_settings()
        assert message.id == "ratelimit.W002" and "comes after" in message.msg
    with override_settings(RATELIMIT=config, MIDDLEWARE=[OURS]):
        assert ids(check_settings()) == ["ratelimit.W002"]
    with override_settings(RATELIMIT=config, MIDDLEWARE=[SESSIONS, AUTH, OURS]):
        assert check_settings() == []
    with override_settings(RATELIMIT=RULES, MIDDLEWARE=[OURS]):
        assert check_settings() == []  # counted by ip: the order does not matter
