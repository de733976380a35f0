from __future__ import annotations

import django
import pytest
from django.urls import resolve, reverse

from django_mitto.views import DeliveryReportView

pytestmark = pytest.mark.django_db


def test_callback_route_is_named_and_takes_a_token() -> None:
    url = reverse("django_mitto:callback", kwargs={"token": "m12.abc-_DEF"})
    assert url == "/mitto/callback/m12.abc-_DEF/"
    match = resolve(url)
    assert match.func.view_class is DeliveryReportView
    assert match.kwargs == {"token": "m12.abc-_DEF"}


@pytest.mark.skipif(django.VERSION < (5, 1), reason="LoginRequiredMiddleware is new in Django 5.1")
def test_callback_is_reachable_behind_login_required_middleware(client, settings) -> None:
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    ]
    response = client.get("/mitto/callback/callback-secret/", {"id": "abc", "status": "delivered"})
    assert response.status_code == 200
    assert response.json()["outcome"] == "unmatched"
    # The middleware is really on: the admin redirects to the login page.
    assert client.get("/admin/django_mitto/message/").status_code == 302


def test_callback_route_without_the_trailing_slash_reaches_the_same_view() -> None:
    with_slash = resolve("/mitto/callback/tok/")
    without = resolve("/mitto/callback/tok")
    assert with_slash.func.view_class is without.func.view_class is DeliveryReportView
    assert without.kwargs == {"token": "tok"}
