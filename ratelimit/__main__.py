"""``python -m ratelimit``: the ``ratelimit`` command line (see :mod:`ratelimit.cli`)."""

from ratelimit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
