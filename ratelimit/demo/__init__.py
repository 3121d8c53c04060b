"""The demo app run by ``ratelimit demo``: one route per algorithm behind the ASGI middleware.

It lives inside the package (not in ``examples/``) so that ``pip install ".[demo]"`` (a
regular, non-editable install) can run it. Needs the ``demo`` extra (Starlette).
"""

from ratelimit.demo.app import DEMO_BURST, DEMO_RATE, ServerTiming, create_app, demo_config

__all__ = ["DEMO_BURST", "DEMO_RATE", "ServerTiming", "create_app", "demo_config"]
