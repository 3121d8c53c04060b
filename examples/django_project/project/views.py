"""Views of the example Django project."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ratelimit.contrib.django import limit


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello from Django\n", content_type="text/plain")


@csrf_exempt
def login(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"token": "demo"})


def items(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"items": [1, 2, 3]})


@csrf_exempt
def upload(request: HttpRequest, bucket: str) -> HttpResponse:
    return JsonResponse({"bucket": bucket, "stored": True})


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


@limit("3/minute", name="report")  # a per-view limit declared in code
def report(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"report": "expensive"})
