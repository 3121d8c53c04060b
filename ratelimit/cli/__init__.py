"""The ``ratelimit`` command line: ``demo``, ``loadtest``, ``check``, ``inspect``, ``reset``,
``top``.

``main(argv)`` returns the exit status: 0 on success, 1 with a one-line
``ratelimit: error: ...`` message on stderr for bad input (never a traceback), 130 when
interrupted. Each command's module is imported only when that command runs, so ``check``,
``inspect`` and ``reset`` work without the ``demo`` extra (uvicorn, Starlette, matplotlib).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ratelimit.cli.args import UsageError, build_parser
from ratelimit.errors import RateLimitError

__all__ = ["main"]


def _run(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "demo":
        from ratelimit.cli.demo import run_demo

        return run_demo(args)
    if command == "loadtest":
        from ratelimit.cli.loadtest import run_loadtest

        return run_loadtest(args)
    if command == "top":
        from ratelimit.cli.top import run_top

        return run_top(args)
    from ratelimit.cli.admin import run_check, run_inspect, run_reset

    if command == "check":
        return run_check(args)
    if command == "inspect":
        return run_inspect(args)
    return run_reset(args)


def _fail(message: object) -> int:
    text = " ".join(str(message).split()) or "unknown error"
    print(f"ratelimit: error: {text}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ratelimit`` command with ``argv`` (default: ``sys.argv[1:]``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.version:
            from ratelimit import __version__

            print(f"ratelimit-middleware {__version__}")
            return 0
        if args.command is None:
            parser.print_help()
            return 1
        return _run(args)
    except SystemExit as exc:  # --help and --version of argparse
        return exc.code if isinstance(exc.code, int) else 0
    except UsageError as exc:
        return _fail(exc)
    except RateLimitError as exc:  # ConfigError, BackendError
        return _fail(exc)
    except ModuleNotFoundError as exc:
        return _fail(
            f"this command needs {exc.name!r}, which is not installed: "
            "pip install 'ratelimit-middleware[demo]'"
        )
    except BrokenPipeError:  # the reader went away (``ratelimit check x | head -1``)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout
        return 1
    except OSError as exc:  # a missing file, a refused connection, a port in use
        return _fail(exc)
    except KeyboardInterrupt:
        newline = "\n" if sys.stderr.isatty() else ""  # end a live progress line first
        print(f"{newline}ratelimit: interrupted", file=sys.stderr)
        return 130
