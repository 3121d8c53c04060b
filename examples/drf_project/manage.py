#!/usr/bin/env python
"""Django's command-line utility for the example DRF project.

From the repository root::

    python examples/drf_project/manage.py runserver
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    sys.path.insert(1, str(here.parent.parent))  # the repository root: `ratelimit` from source
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
