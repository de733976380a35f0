"""The "Usage and cost" admin page: Mitto's usage per country beside the local count."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import services
from ..conf import DEFAULT_ACCOUNT, conf
from ..exceptions import MittoError
from .dashboard import can_view_messages
from .forms import account_field

#: The longest period one page asks Mitto for.
MAX_DAYS = 366


class UsagePeriodForm(forms.Form):
    """The period of the usage page: two dates, both included (UTC days)."""

    start = forms.DateField(label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("To"), widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if conf.SEVERAL_ACCOUNTS:
            self.fields["account"] = account_field()
            self.fields["account"].required = False
            self.fields["account"].help_text = ""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                self.add_error("end", ValidationError(_("The end is before the start.")))
            elif (end - start).days >= MAX_DAYS:
                self.add_error(
                    "end",
                    ValidationError(
                        _("Choose at most %(days)d days.") % {"days": MAX_DAYS}, code="too_long"
                    ),
                )
        return data


def usage_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """The usage page; needs view permission on messages (the caller wraps admin_view)."""
    site = model_admin.admin_site
    if not can_view_messages(site, request):
        raise PermissionDenied
    start, end = services.month_to_date()
    if "start" in request.GET or "end" in request.GET:
        form = UsagePeriodForm(request.GET)
    else:
        initial = {"start": start.isoformat(), "end": end.isoformat()}
        form = UsagePeriodForm({**initial, "account": request.GET.get("account", "")})
    report = None
    error = ""
    if form.is_valid():
        start, end = form.cleaned_data["start"], form.cleaned_data["end"]
        account = form.cleaned_data.get("account") or DEFAULT_ACCOUNT
        try:
            report = services.usage(start, end, account=account)
        except MittoError as exc:
            # The local side is still worth seeing while Mitto cannot be asked.
            error = str(exc)
            local = services.local_usage(
                start, end, account=account if conf.SEVERAL_ACCOUNTS else None
            )
            report = services.UsageReport(
                start=start,
                end=end,
                rows=[
                    services.CountryUsage(
                        country=country, local_messages=counts[0], local_parts=counts[1]
                    )
                    for country, counts in sorted(local.items())
                ],
            )
    opts = model_admin.model._meta
    context = {
        **site.each_context(request),
        "title": gettext("Usage and cost"),
        "subtitle": None,
        "opts": opts,
        "form": form,
        "report": report,
        "mitto_error": error,
        "dashboard_url": reverse("admin:django_mitto_dashboard", current_app=site.name),
        "has_batch_view_permission": model_admin.has_view_permission(request),
    }
    request.current_app = site.name
    return TemplateResponse(request, "admin/django_mitto/usage.html", context)
