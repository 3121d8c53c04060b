"""The Django app: ``"ratelimit.contrib.django"`` in ``INSTALLED_APPS`` registers the checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class RateLimitConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    """Registers the ``settings.RATELIMIT`` system checks (:mod:`.checks`) when Django starts.

    The app has no models, no migrations and no URLs; the middleware and the ``@limit``
    decorator work without it, the checks need it.
    """

    name = "ratelimit.contrib.django"
    label = "ratelimit"
    verbose_name = "Rate limiting"
    default = True

    def ready(self) -> None:
        """Register :func:`~ratelimit.contrib.django.checks.check_settings` (tag ``ratelimit``)."""
        from ratelimit.contrib.django.checks import TAG, check_settings

        checks.register(check_settings, TAG)
