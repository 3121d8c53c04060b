"""URLs of the Django app the HTTP tests drive (sync and async views, decorated views)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import path

from ratelimit.contrib.django import limit


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello", content_type="text/plain")


async def ahello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello async", content_type="text/plain")


@limit("1/minute", name="decorated-sync")
def decorated(request: HttpRequest) -> HttpResponse:
    return HttpResponse("decorated", content_type="text/plain")


@limit("1/minute", name="decorated-async", methods=["POST"])
async def adecorated(request: HttpRequest) -> HttpResponse:
    return HttpResponse("decorated async", content_type="text/plain")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(iter([b"a", b"b", b"c"]), content_type="text/plain")


urlpatterns = [
    path("limited", hello),
    path("alimited", ahello),
    path("free", hello),
    path("decorated", decorated),
    path("adecorated", adecorated),
    path("stream", stream),
]
