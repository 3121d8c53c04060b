"""Bad configs fail at start-up with the file and the key, and ``check`` agrees with start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ratelimit import ConfigError
from ratelimit.http.config import load_config
from ratelimit.http.engine import Engine

RULE = '[[rules]]\nname = "r"\npath = "/a"\nlimit = "5/minute"\n'

BAD = [
    # (TOML text, what the message must name)
    ('backend = "memory://?max_keys=0"\n' + RULE, "backend: "),
    ('backend = "memcached://localhost"\n' + RULE, "backend: "),
    ('backend = "redis+cluster://localhost"\n' + RULE, "backend: "),
    ('backend = "redis://localhost:notaport/0"\n' + RULE, "backend: "),
    ('backend = "redis://localhost:99999/0"\n' + RULE, "backend: "),
    ("timeout = 0\n" + RULE, "timeout: "),
    ('on_error = "local"\nlocal_fraction = 1.5\n' + RULE, "local_fraction: "),
    ("trusted_proxies = [10]\n" + RULE, "trusted_proxies[0]: "),
    (RULE.replace('"/a"', '"/a?x=1"'), "rules[0].path: "),
    (RULE.replace('"/a"', '"/a#top"'), "rules[0].path: "),
    (RULE.replace('"/a"', '"/a/../b"'), "rules[0].path: "),
    (RULE.replace('"/a"', '"/a%2Fb"'), "rules[0].path: "),
    (RULE + 'methods = ["FOO"]\n', "rules[0].methods: unknown method 'FOO'"),
    (RULE + "cost = 6\n", "rules[0].cost: 6 is more than the capacity"),
    (
        '[[rules]]\npath = "/a"\nalgorithm = "token_bucket"\nburst = 20\n'
        'limits = ["10/second", "1000/hour"]\n',
        "rules[0].burst: one burst (20) is shared by limits of different periods",
    ),
    ('[[rules]]\npath = "/a"\nlimits = [{ burst = 2 }]\n', "rules[0].limits[0].rate: missing"),
    ('[[rules]]\npath = "/a"\nlimits = [{ rate = "1/s", size = 2 }]\n', "limits[0]: unknown key"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=range(len(BAD)))
def test_bad_values_fail_at_load_with_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    """Each bad value raises ConfigError naming the file and the key, at load time."""
    path = tmp_path / "ratelimit.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message


@pytest.mark.parametrize(("text", "expected"), BAD[:5], ids=range(5))
def test_check_refuses_what_start_up_refuses(tmp_path: Path, text: str, expected: str) -> None:
    """``ratelimit check`` fails (exit 1, one line) on every backend URL start-up refuses."""
    path = tmp_path / "ratelimit.toml"
    path.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "ratelimit", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert str(path) in done.stderr and expected in done.stderr
    assert "Traceback" not in done.stderr


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not UTF-8 gives a ConfigError naming the file and the line."""
    path = tmp_path / "ratelimit.toml"
    path.write_bytes(RULE.encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe9 at line 5\)"):
        load_config(path)


def test_limit_tables_give_each_limit_its_own_options() -> None:
    """``limits = [{ rate, burst }, "1000/hour"]``: the burst belongs to the first limit."""
    config = load_config(
        {
            "rules": [
                {
                    "name": "api",
                    "path": "/api/**",
                    "algorithm": "token_bucket",
                    "limits": [
                        {"rate": "10/second", "burst": 20},
                        "1000/hour",
                        {"rate": "5/s", "algorithm": "sliding_window"},
                    ],
                }
            ]
        }
    )
    first, second, third = config.rules[0].limits
    assert (first.capacity, second.capacity, third.capacity) == (20, 1000, 5)
    assert third.algorithm == "sliding_window" and second.algorithm == "token_bucket"


def test_no_rules_is_a_warning_that_check_prints(tmp_path: Path) -> None:
    """A config without rules is legal (decorators add them) but ``check`` warns."""
    path = tmp_path / "ratelimit.toml"
    path.write_text('backend = "memory://"\n')
    assert any("no rules" in w for w in load_config(path).warnings)
    done = subprocess.run(
        [sys.executable, "-m", "ratelimit", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "warning:" in done.stdout and "no rules" in done.stdout


def test_config_timeout_reaches_the_redis_backend() -> None:
    """``timeout`` in the config becomes the Redis backend's timeout (nothing connects)."""
    pytest.importorskip("redis")
    engine = Engine({"backend": "redis://127.0.0.1:1/0", "timeout": 0.05, "rules": []})
    backend = engine.backend
    assert getattr(backend, "timeout", None) == 0.05
