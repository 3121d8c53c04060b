"""URLs of the example DRF project."""

from __future__ import annotations

from django.urls import path

from project import views

urlpatterns = [
    path("api/hello", views.Hello.as_view()),
    path("api/burst", views.Burst.as_view()),
    path("api/upload", views.Upload.as_view()),
]
