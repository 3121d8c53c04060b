"""The command line itself: help for every command, one-line errors with exit code 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ratelimit.cli import main
from tests.cli.conftest import RunCli, first_line_error

COMMANDS = ("demo", "loadtest", "check", "inspect", "reset")


def test_console_script_and_module_show_the_commands(run_cli: RunCli) -> None:
    """``python -m ratelimit --help`` lists every command and exits 0."""
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("demo", "--duration"),
        ("loadtest", "--concurrency"),
        ("check", "CONFIG"),
        ("inspect", "--rule"),
        ("reset", "--limit"),
    ],
)
def test_every_command_has_help(
    command: str, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ratelimit COMMAND --help`` prints that command's options and exits 0."""
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: ratelimit {command}" in out
    assert option in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``--version`` prints the distribution name and version."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ratelimit-middleware ")


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a command the help is shown and the exit status is 1."""
    assert main([]) == 1
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["loadtest", "http://127.0.0.1:1/", "--rate", "0"], "--rate"),
        (["loadtest", "http://127.0.0.1:1/", "--rate", "nan"], "--rate"),
        (["loadtest", "http://127.0.0.1:1/"], "--rate"),
        (["loadtest", "ftp://example.org/", "--rate", "5"], "http:// or https://"),
        (["loadtest", "http://127.0.0.1:1/", "--rate", "5", "-H", "no-colon"], "Name: value"),
        (["loadtest", "http://127.0.0.1:1/", "--rate", "5", "--concurrency", "0"], "--concurrency"),
        (
            ["loadtest", "http://127.0.0.1:1/", "--rate", "5", "--expect", "10/fortnight"],
            "--expect",
        ),
        (["demo", "--duration", "1"], "--duration"),
        (["demo", "--backend", "postgres://x"], "postgres"),
        (["demo", "--backend", "redis://127.0.0.1:1/0"], "127.0.0.1:1"),
        (["loadtest", "http://127.0.0.1:1/", "--rate", "1e5", "--duration", "3600"], "at most"),
        (["inspect", "k"], "--rule NAME"),
        (["inspect", "k", "--limit", "10/second"], "--backend"),
        (["inspect", "k", "--limit", "ten/second", "--backend", "memory://"], "--limit"),
        (["reset", "k", "--rule", "login"], "--config"),
        (["reset", "k", "--limit", "5/s", "--burst", "3", "--backend", "memory://"], "burst"),
        (["check", "/nonexistent/ratelimit.toml"], "/nonexistent/ratelimit.toml"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input exits 1 with one ``ratelimit: error:`` line naming the problem."""
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if not line.startswith("ratelimit: note")]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("ratelimit: error: ")
    assert expected in lines[0]


def test_bad_input_through_a_subprocess_has_no_traceback(run_cli: RunCli) -> None:
    """Run as a user would, a bad rate gives exit 1, one line on stderr and no traceback."""
    result = run_cli("loadtest", "http://127.0.0.1:1/", "--rate", "-3")
    assert "--rate" in first_line_error(result)
    assert result.stdout == ""


def _without_demo_extra(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a subprocess where uvicorn, Starlette and matplotlib cannot be imported."""
    code = (
        "import sys\n"
        "for name in ('matplotlib', 'starlette', 'uvicorn', 'httpx'):\n"
        "    sys.modules[name] = None  # import fails as if not installed\n"
        "from ratelimit.cli import main\n"
        f"raise SystemExit(main({list(argv)!r}))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_check_needs_no_demo_extra(tmp_path: Path) -> None:
    """``check`` works with only the core installed."""
    config = tmp_path / "ratelimit.toml"
    config.write_text('[[rules]]\npath = "/x"\nlimit = "1/second"\n')
    result = _without_demo_extra("check", str(config))
    assert result.returncode == 0, result.stderr
    assert "OK, 1 rule" in result.stdout


def test_demo_without_its_extra_says_what_to_install(tmp_path: Path) -> None:
    """Without the demo extra, ``demo`` fails with one line naming the extra to install."""
    result = _without_demo_extra("demo", "--out", str(tmp_path))
    line = first_line_error(result)
    assert "pip install 'ratelimit-middleware[demo]'" in line
