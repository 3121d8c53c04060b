"""URLs of the Django REST framework views the DRF throttle tests drive."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django.urls import path
from rest_framework.authentication import BaseAuthentication
from rest_framework.decorators import api_view, throttle_classes
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ratelimit.contrib.drf import AnonRateThrottle, ScopedRateThrottle, UserRateThrottle


class TokenUser(SimpleNamespace):
    """A user with a primary key, authenticated (no database needed)."""

    is_authenticated = True


class TokenAuthentication(BaseAuthentication):  # type: ignore[misc]
    """``Authorization: Token <pk>`` authenticates user ``<pk>`` (tests only)."""

    def authenticate(self, request: Request) -> tuple[TokenUser, str] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Token "):
            return None
        return TokenUser(pk=header[6:]), header[6:]


class Base(APIView):  # type: ignore[misc]
    """Settings spelled on the view: DRF reads its class defaults at import time."""

    authentication_classes = (TokenAuthentication,)
    permission_classes = ()
    renderer_classes = (JSONRenderer,)

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class AnonView(Base):
    throttle_classes = (AnonRateThrottle,)


class UserView(Base):
    throttle_classes = (UserRateThrottle,)


class BothView(Base):
    throttle_classes = (AnonRateThrottle, UserRateThrottle)


class BurstView(Base):
    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "burst"


class OtherBurstView(BurstView):
    pass


class UnscopedView(Base):
    throttle_classes = (ScopedRateThrottle,)


class TenantThrottle(UserRateThrottle):
    """Overrides ``get_cache_key``: one budget per ``X-Tenant``."""

    scope = "tenant"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return request.headers.get("X-Tenant")


class TenantView(Base):
    throttle_classes = (TenantThrottle,)


@api_view(["GET"])
@throttle_classes([AnonRateThrottle])
def function_view(request: Request) -> Response:
    return Response({"ok": True})


urlpatterns = [
    path("anon", AnonView.as_view()),
    path("user", UserView.as_view()),
    path("both", BothView.as_view()),
    path("burst", BurstView.as_view()),
    path("burst-too", OtherBurstView.as_view()),
    path("unscoped", UnscopedView.as_view()),
    path("tenant", TenantView.as_view()),
    path("function", function_view),
]
