"""The replies admin: list and search replies, follow a conversation, answer from the page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import services, validators
from ..conf import conf
from ..models import InboundMessage, Message, OptOut

#: Most messages each way a conversation page shows (the latest ones).
THREAD_LIMIT = 200


class ReplyForm(forms.Form):
    """The answer typed on a conversation page."""

    sender = forms.CharField(
        label=_("Sender"),
        required=False,
        max_length=16,
        help_text=_("3-11 letters and digits, or a number. Empty: MITTO_DEFAULT_SENDER."),
    )
    text = forms.CharField(
        label=_("Reply"), strip=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 60})
    )


@dataclass(frozen=True)
class ThreadItem:
    """One message of a conversation, outbound or inbound."""

    at: datetime
    inbound: bool
    text: str
    obj: Any

    @property
    def outbound(self) -> bool:
        return not self.inbound


def conversation(number: str) -> list[ThreadItem]:
    """Messages sent to ``number`` and replies from it, oldest first (two queries)."""
    sent = Message.objects.filter(recipient=number).order_by("-created_at", "-pk")[:THREAD_LIMIT]
    received = InboundMessage.objects.filter(sender=number).order_by("-received_at", "-pk")[
        :THREAD_LIMIT
    ]
    items = [ThreadItem(m.sent_at or m.created_at, False, m.text, m) for m in sent]
    items += [ThreadItem(r.received_at, True, r.text, r) for r in received]
    return sorted(items, key=lambda item: (item.at, item.inbound))


@admin.register(InboundMessage)
class InboundMessageAdmin(admin.ModelAdmin):
    list_display = [
        "received_at",
        "sender",
        "recipient",
        "short_text",
        "answers",
        "opted_out",
        "outcome",
        "thread_link",
    ]
    list_filter = ["outcome", "opted_out", "account"]
    search_fields = ["sender", "recipient", "text"]
    list_select_related = ["in_reply_to"]
    date_hierarchy = "received_at"
    readonly_fields = [
        "sender",
        "recipient",
        "text",
        "account",
        "provider_id",
        "outcome",
        "in_reply_to",
        "opted_out",
        "method",
        "remote_addr",
        "payload",
        "received_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("text"))
    def short_text(self, obj: InboundMessage) -> str:
        return obj.text if len(obj.text) <= 60 else obj.text[:59] + "…"

    @admin.display(description=_("in reply to"))
    def answers(self, obj: InboundMessage) -> str:
        if obj.in_reply_to is None:
            return "-"
        url = reverse("admin:django_mitto_message_change", args=[obj.in_reply_to_id])
        return format_html('<a href="{}">{}</a>', url, obj.in_reply_to.short_text)

    @admin.display(description=_("conversation"))
    def thread_link(self, obj: InboundMessage) -> str:
        if not obj.sender:
            return "-"
        url = reverse("admin:django_mitto_inbound_thread", args=[obj.sender])
        return format_html('<a href="{}" class="mitto-thread-link">{}</a>', url, gettext("Open"))

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "thread/<str:number>/", wrap(self.thread_view), name="django_mitto_inbound_thread"
            ),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        extra_context = extra_context or {}
        obj = self.get_object(request, object_id)
        if obj is not None and obj.sender:
            extra_context["thread_url"] = reverse(
                "admin:django_mitto_inbound_thread", args=[obj.sender]
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def thread_view(self, request: HttpRequest, number: str) -> HttpResponse:
        """The conversation with one number, and a form to answer it (sent with send_sms)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        can_reply = request.user.has_perm("django_mitto.add_message")
        latest = InboundMessage.objects.filter(sender=number).order_by("-received_at").first()
        initial_sender = conf.DEFAULT_SENDER
        if latest is not None and latest.recipient:
            try:
                validators.validate_sender(latest.recipient)
            except ValidationError:
                pass
            else:
                initial_sender = latest.recipient
        form = ReplyForm(initial={"sender": initial_sender})
        if request.method == "POST":
            if not can_reply:
                raise PermissionDenied
            form = ReplyForm(request.POST)
            if form.is_valid():
                try:
                    services.send_sms(
                        number,
                        form.cleaned_data["text"],
                        sender=form.cleaned_data["sender"] or None,
                    )
                except ValidationError as exc:
                    for field, errors in exc.message_dict.items():
                        target = field if field in form.fields else None
                        form.add_error(target, errors)
                else:
                    messages.success(request, gettext("Reply sent to %s.") % number)
                    return HttpResponseRedirect(request.path)
        opts = self.opts
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Conversation with %s") % number,
            "opts": opts,
            "number": number,
            "items": conversation(number),
            "form": form,
            "can_reply": can_reply,
            "opted_out": OptOut.objects.filter(number=number).exists(),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/django_mitto/inboundmessage/thread.html", context)
