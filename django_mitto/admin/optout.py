"""The OptOut admin: add one, import a CSV file, export as CSV, search."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from .. import optouts
from ..models import DEFAULT_ACCOUNT, OptOut
from .bulk import MAX_CSV_BYTES, CsvError, decode_csv, parse_csv


class OptOutForm(forms.ModelForm):
    """Add or edit one opt-out: the number is normalised to E.164."""

    class Meta:
        model = OptOut
        fields = ["number", "account", "source", "note"]


class OptOutImportForm(forms.Form):
    """A CSV file of numbers (a column of numbers, a header row recognised) and a note."""

    csv_file = forms.FileField(
        label=_("CSV file"),
        widget=forms.FileInput(attrs={"accept": ".csv,.txt,text/csv,text/plain"}),
        help_text=_(
            "A column of numbers in international format (a header row is recognised); "
            "“;” or “,” separated; UTF-8."
        ),
    )
    account = forms.CharField(label=_("Account"), max_length=64, initial=DEFAULT_ACCOUNT)
    note = forms.CharField(label=_("Note"), required=False, max_length=500)

    def clean_csv_file(self) -> str:
        upload = self.cleaned_data["csv_file"]
        if upload.size > MAX_CSV_BYTES * 8:
            raise ValidationError(_("The file is too large."), code="too_large")
        try:
            return decode_csv(b"".join(upload.chunks()))
        except CsvError as exc:
            raise ValidationError(str(exc), code="encoding") from None


@admin.register(OptOut)
class OptOutAdmin(admin.ModelAdmin):
    form = OptOutForm
    list_display = ["number", "account", "source", "created_at", "note"]
    list_filter = ["source", "account"]
    search_fields = ["number", "note"]
    date_hierarchy = "created_at"
    actions = ["export_csv"]
    change_list_template = "admin/django_mitto/optout/change_list.html"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[OptOut], search_term: str
    ) -> tuple[QuerySet[OptOut], bool]:
        # "079 123 45 67" or "0041..." finds the number stored as +41791234567.
        from .. import validators

        try:
            number = validators.normalize_recipient(search_term.strip())
        except ValidationError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(number=number), False

    def save_model(self, request: HttpRequest, obj: OptOut, form: Any, change: bool) -> None:
        if not change and not obj.source:
            obj.source = OptOut.Source.ADMIN
        super().save_model(request, obj, form, change)

    @admin.action(description=_("Export the selected opt-outs as CSV"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet[OptOut]) -> StreamingHttpResponse:
        return _csv_response(queryset)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="django_mitto_optout_import"),
            path("export/", wrap(self.export_view), name="django_mitto_optout_export"),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> StreamingHttpResponse:
        """Every opt-out (or those the change list's filters and search keep) as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        return _csv_response(changelist.get_queryset(request))

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload a CSV file of numbers; each valid new one becomes an opt-out (source import)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        result = None
        if request.method == "POST":
            form = OptOutImportForm(request.POST, request.FILES)
            if form.is_valid():
                try:
                    entries, _layout = parse_csv(form.cleaned_data["csv_file"])
                except CsvError as exc:
                    form.add_error("csv_file", ValidationError(str(exc), code="invalid"))
                else:
                    result = optouts.add_opt_outs(
                        [entry.raw for entry in entries],
                        account=form.cleaned_data["account"],
                        note=form.cleaned_data["note"],
                    )
                    # Report invalid rows by their line in the file, not their rank.
                    result.invalid = [
                        (entries[rank - 1].position, raw, reason)
                        for rank, raw, reason in result.invalid
                    ]
                    messages.success(
                        request,
                        ngettext(
                            "%(added)d opt-out added, %(existing)d already there.",
                            "%(added)d opt-outs added, %(existing)d already there.",
                            result.added,
                        )
                        % {"added": result.added, "existing": result.existing},
                    )
                    if not result.invalid:
                        return HttpResponseRedirect(
                            reverse(
                                "admin:django_mitto_optout_changelist",
                                current_app=self.admin_site.name,
                            )
                        )
        else:
            form = OptOutImportForm()
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Import opt-outs"),
            "opts": self.opts,
            "form": form,
            "result": result,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/django_mitto/optout/import.html", context)


def _csv_response(queryset: QuerySet[OptOut]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(optouts.export_csv(queryset), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="opt-outs.csv"'
    return response
