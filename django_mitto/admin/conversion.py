"""The "Mark as converted" action of the message admin (Mitto's conversion tracking)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import services
from ..exceptions import MittoAPIError, MittoError

#: Each message is one request to Mitto: a bigger selection is refused.
MARK_CONVERTED_LIMIT = 500


@admin.action(description=_("Mark as converted (tell Mitto)"), permissions=["change"])
def mark_converted(model_admin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    """Report each selected message with a Mitto id as converted, once."""
    selected = list(queryset.order_by("pk")[: MARK_CONVERTED_LIMIT + 1])
    if len(selected) > MARK_CONVERTED_LIMIT:
        model_admin.message_user(
            request,
            _("Select at most %(limit)d messages to mark as converted.")
            % {"limit": MARK_CONVERTED_LIMIT},
            messages.ERROR,
        )
        return
    marked = already = without_id = 0
    unknown: list[str] = []
    stopped: str = ""
    for message in selected:
        if message.converted_at is not None:
            already += 1
            continue
        if not message.provider_id:
            without_id += 1
            continue
        try:
            services.mark_converted(message)
        except MittoAPIError as exc:
            if exc.status_code == 404:
                unknown.append(message.provider_id)
                continue
            # Feature off (400), rate limit (429), key refused (401): the rest would fare alike.
            stopped = str(exc)
            break
        except MittoError as exc:
            stopped = str(exc)
            break
        marked += 1
    if marked:
        model_admin.message_user(
            request,
            ngettext(
                "%(count)d message was marked as converted.",
                "%(count)d messages were marked as converted.",
                marked,
            )
            % {"count": marked},
            messages.SUCCESS,
        )
    skipped = []
    if already:
        skipped.append(
            ngettext("%(count)d was already marked", "%(count)d were already marked", already)
            % {"count": already}
        )
    if without_id:
        skipped.append(
            ngettext(
                "%(count)d has no Mitto id (never accepted by Mitto)",
                "%(count)d have no Mitto id (never accepted by Mitto)",
                without_id,
            )
            % {"count": without_id}
        )
    if skipped:
        model_admin.message_user(
            request, _("Skipped: %(why)s.") % {"why": "; ".join(skipped)}, messages.WARNING
        )
    if unknown:
        model_admin.message_user(
            request,
            ngettext(
                "Mitto knows no message with the id %(ids)s.",
                "Mitto knows no messages with the ids %(ids)s.",
                len(unknown),
            )
            % {"ids": ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")},
            messages.ERROR,
        )
    if stopped:
        model_admin.message_user(
            request,
            _("Stopped: %(error)s The other messages were not marked.") % {"error": stopped},
            messages.ERROR,
        )
