"""URLs of the example Django project."""

from __future__ import annotations

from django.urls import path

from project import views

urlpatterns = [
    path("", views.home),
    path("auth/login", views.login),
    path("api/items", views.items),
    path("upload/<str:bucket>", views.upload),
    path("healthz", views.healthz),
    path("report", views.report),
]
