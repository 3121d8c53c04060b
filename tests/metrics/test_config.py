"""The [metrics] table: keys, validation messages, and nothing recorded when it is off."""

from __future__ import annotations

from typing import Any

import pytest

from ratelimit import ConfigError
from ratelimit.http.config import load_config
from ratelimit.http.engine import Engine
from ratelimit.metrics import MetricsConfig, Recorder, parse_metrics

RULES = [{"name": "api", "path": "/api/**", "limit": "2/minute"}]


def test_everything_is_off_by_default() -> None:
    """No [metrics] table: no observer, no status page, and the engine runs no metrics code."""
    engine = Engine({"rules": RULES})
    assert engine.config.metrics == MetricsConfig()
    assert not engine.config.metrics.enabled
    assert engine.observer is None
    assert engine.status is None


def test_toml_table_is_parsed(tmp_path: Any) -> None:
    """The SPEC §7 keys are read from a TOML file."""
    path = tmp_path / "ratelimit.toml"
    path.write_text(
        '[metrics]\nprometheus = false\nopentelemetry = true\nstatus_path = "/_rl"\n'
        'status_allow = ["10.0.0.0/8"]\n[[rules]]\nname = "api"\npath = "/api"\nlimit = "1/s"\n'
    )
    config = load_config(path)
    assert config.metrics == MetricsConfig(
        opentelemetry=True, status_path="/_rl", status_allow=("10.0.0.0/8",)
    )
    engine = Engine(config)
    assert isinstance(engine.observer, Recorder)
    assert engine.status is not None and engine.status.path == "/_rl"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"status_allow": ["10.0.0.0/33"]}, "cfg.toml: metrics.status_allow[0]: invalid network"),
        ({"status_allow": "127.0.0.1"}, "cfg.toml: metrics.status_allow: must be a list"),
        ({"status_path": "_ratelimit"}, "cfg.toml: metrics.status_path: must be a path"),
        ({"prometheus": "yes"}, "cfg.toml: metrics.prometheus: must be true, false or"),
        ({"opentelemetry": 1}, "cfg.toml: metrics.opentelemetry: must be true, false or"),
        ({"promethues": True}, "cfg.toml: metrics: unknown key 'promethues' (valid keys:"),
    ],
)
def test_errors_name_the_source_and_key(table: dict[str, Any], message: str) -> None:
    """Every invalid value is a ConfigError naming the source and the key."""
    with pytest.raises(ConfigError) as info:
        load_config({"metrics": table, "rules": RULES}, name="cfg.toml")
    assert str(info.value).startswith(message), str(info.value)


def test_not_a_table() -> None:
    """``metrics = true`` is an error that says a table is expected."""
    with pytest.raises(ConfigError, match=r"^src: metrics: must be a table"):
        parse_metrics(True, "src")


def test_registry_object_in_code(registry: Any) -> None:
    """A CollectorRegistry may be given in code instead of ``true``."""
    config = load_config({"metrics": {"prometheus": registry}, "rules": RULES})
    assert config.metrics.prometheus is registry
    assert Engine(config).observer is not None


def test_missing_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """prometheus = true without prometheus_client installed fails at start-up with the fix."""
    import ratelimit.http.metrics_config as module

    monkeypatch.setattr(module, "_installed", lambda name: False)
    with pytest.raises(ConfigError, match=r"ratelimit-middleware\[prometheus\]"):
        MetricsConfig(prometheus=True)


def test_without_metrics_nothing_is_loaded() -> None:
    """An engine without [metrics] decides requests without loading the recorder,
    prometheus_client or opentelemetry."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ratelimit.http.engine import Engine\n"
        "from tests.metrics.conftest import hit\n"
        "engine = Engine({'rules': [{'name': 'api', 'path': '/api/**', 'limit': '1/minute'}]})\n"
        "assert [hit(engine, '/api/x').kind for _ in range(2)] == ['allowed', 'rejected']\n"
        "loaded = [m for m in ('prometheus_client', 'opentelemetry', 'ratelimit.metrics.observer',"
        " 'ratelimit.metrics.top', 'ratelimit.metrics.status') if m in sys.modules]\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
