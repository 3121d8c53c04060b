"""Settings of the example Django project: the rate limits come from examples/ratelimit.toml."""

from __future__ import annotations

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

# The app registers the settings.RATELIMIT system checks (`manage.py check`).
INSTALLED_APPS = ["ratelimit.contrib.django"]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "ratelimit.contrib.django.RateLimitMiddleware",
]
ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# The same TOML file as the other examples (a dict of the same shape works too).
RATELIMIT = BASE_DIR.parent / "ratelimit.toml"
