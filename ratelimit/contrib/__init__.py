"""Framework integrations: :mod:`ratelimit.contrib.django`, :mod:`ratelimit.contrib.starlette`."""
