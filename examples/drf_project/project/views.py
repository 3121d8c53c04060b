"""Views of the example DRF project."""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import APIView

from ratelimit.contrib.drf import ScopedRateThrottle


class Hello(APIView):
    """The default throttles: 100/minute per address, 1000/hour per user."""

    def get(self, request: Any) -> Response:
        return Response({"hello": str(request.user.pk or "anonymous")})


class Burst(APIView):
    """A scoped throttle: 10/minute per user or address, shared by every "burst" view."""

    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "burst"

    def get(self, request: Any) -> Response:
        return Response({"burst": True})


class Upload(APIView):
    """A scoped throttle with our rate spelling: 5 per 10 seconds."""

    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "uploads"

    def post(self, request: Any) -> Response:
        return Response({"stored": True})
