"""Settings of the example DRF project: DRF's throttle settings, our throttle classes.

The backend comes from ``RATELIMIT_BACKEND`` (default ``memory://``, one budget per worker
process); with several workers, point it at Redis so that they share one budget::

    RATELIMIT_BACKEND=redis://localhost:6379/0 \
        gunicorn --chdir examples/drf_project -w 4 -k gthread --threads 4 project.wsgi
"""

from __future__ import annotations

import os

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.auth",  # DRF's AnonymousUser
    "django.contrib.contenttypes",
    "rest_framework",
    "ratelimit.contrib.django",  # `manage.py check` validates settings.RATELIMIT
]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

REST_FRAMEWORK = {
    # DRF's own settings; only the classes' module changes.
    "DEFAULT_THROTTLE_CLASSES": [
        "ratelimit.contrib.drf.AnonRateThrottle",
        "ratelimit.contrib.drf.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": "100/minute",
        "user": "1000/hour",
        "burst": "10/minute",  # views with throttle_scope = "burst"
        "uploads": "5/10s",  # our spelling: 5 per 10 seconds
    },
    "DEFAULT_AUTHENTICATION_CLASSES": ["project.auth.DemoTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

# The engine the throttles decide on (the same as RateLimitMiddleware's, if installed).
RATELIMIT = {
    "backend": os.environ.get("RATELIMIT_BACKEND", "memory://"),
    "headers": "ietf",
    "on_error": "allow",  # a Redis outage admits rather than failing every request
    "trusted_proxies": [],  # CIDRs of your load balancers: then X-Forwarded-For is read
}
