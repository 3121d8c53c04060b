"""A demo authentication: ``Authorization: Token <name>`` is user ``<name>``.

For the example only (it believes any token); use a real DRF authentication class.
"""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication


class DemoUser:
    """An authenticated user without a database: its primary key is its name."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, name: str) -> None:
        self.pk = name


class DemoTokenAuthentication(BaseAuthentication):
    """``Authorization: Token <name>`` authenticates ``<name>``."""

    def authenticate(self, request: Any) -> tuple[DemoUser, str] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Token ") or len(header) == 6:
            return None
        return DemoUser(header[6:]), header[6:]
