"""A one-view Django project behind ``ratelimit.contrib.django.RateLimitMiddleware`` with a
byte quota, for ``gunicorn tests.support.byte_quota_django:application``: the view reads
``request.body`` and answers ``read=<bytes>``. Configures Django on import (its own
process only: the test suite imports it never)."""

from __future__ import annotations

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path

from tests.support.byte_quota_apps import CONFIG

settings.configure(
    DEBUG=False,
    SECRET_KEY="tests",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["ratelimit.contrib.django.RateLimitMiddleware"],
    INSTALLED_APPS=[],
    RATELIMIT=CONFIG,
    DATA_UPLOAD_MAX_MEMORY_SIZE=None,
)
django.setup()


def upload(request: HttpRequest) -> HttpResponse:
    """Read the whole body; say how many bytes it had."""
    return HttpResponse(b"read=%d" % len(request.body), content_type="text/plain")


urlpatterns = [path("upload", upload)]

from django.core.wsgi import get_wsgi_application  # noqa: E402 (after settings.configure)

application = get_wsgi_application()

from django.core.asgi import get_asgi_application  # noqa: E402

#: The same project under ASGI (the middleware's async path), for uvicorn.
asgi_application = get_asgi_application()
