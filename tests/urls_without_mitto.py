"""A project URLconf that forgot django_mitto.urls (for the system check test)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
