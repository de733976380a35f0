"""The timeline of one message: its own events and every delivery report, in order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import DeliveryReport, Message, Status

# -- timeline ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a message's timeline in the change view."""

    when: dt.datetime
    title: str
    status: str = ""
    status_label: str = ""
    details: tuple[str, ...] = ()
    report: DeliveryReport | None = None
    order: int = 0


def build_timeline(message: Message, reports: Iterable[DeliveryReport]) -> list[TimelineEntry]:
    """The known events of ``message``, oldest first: created, sent, each report, last status."""
    labels = dict(Status.choices)
    entries = [
        TimelineEntry(
            when=message.created_at,
            title=str(_("Created")),
            status=Status.QUEUED,
            status_label=str(labels[Status.QUEUED]),
            order=0,
        )
    ]
    if message.sent_at:
        details = []
        if message.provider_id:
            details.append(str(_("Mitto id %(id)s") % {"id": message.provider_id}))
        if message.response_code is not None:
            details.append(
                str(
                    _("response %(code)s %(text)s")
                    % {
                        "code": message.response_code,
                        "text": message.response_text,
                    }
                ).strip()
            )
        if message.segments:
            details.append(
                ngettext("%(count)d part", "%(count)d parts", message.segments)
                % {"count": message.segments}
            )
        entries.append(
            TimelineEntry(
                when=message.sent_at,
                title=str(_("Accepted by Mitto")),
                status=Status.SENT,
                status_label=str(labels[Status.SENT]),
                details=tuple(details),
                order=1,
            )
        )
    outcomes = dict(DeliveryReport.Outcome.choices)
    for report in reports:
        details = [str(_("outcome: %(outcome)s") % {"outcome": outcomes.get(report.outcome, "-")})]
        if report.error_code:
            details.append(str(_("error code %(code)s") % {"code": report.error_code}))
        if report.mcc or report.mnc:
            details.append(
                str(
                    _("MCC/MNC %(mcc)s/%(mnc)s")
                    % {"mcc": report.mcc or "-", "mnc": report.mnc or "-"}
                )
            )
        entries.append(
            TimelineEntry(
                when=report.received_at,
                title=str(_("Delivery report “%(status)s”") % {"status": report.status or "?"}),
                status=report.mapped_status,
                status_label=str(labels.get(report.mapped_status, _("not understood"))),
                details=tuple(details),
                report=report,
                order=2,
            )
        )
    if message.status_changed_at:
        details = [message.error] if message.error else []
        entries.append(
            TimelineEntry(
                when=message.status_changed_at,
                title=str(_("Current status")),
                status=message.status,
                status_label=str(labels.get(message.status, message.status)),
                details=tuple(details),
                order=3,
            )
        )
    return sorted(entries, key=lambda entry: (entry.when, entry.order))
