"""The service layer, in one place: every public name of :mod:`django_mitto.creating` (making
messages), :mod:`django_mitto.sending` (sending them) and :mod:`django_mitto.clients`, plus
conversion tracking and usage (:func:`mark_converted`, :func:`usage`), which live here.

* :func:`send_sms` validates, creates a :class:`~django_mitto.models.Message` and has it sent
  once the transaction commits.
* :func:`send_bulk` creates a :class:`~django_mitto.models.Batch` and its messages and has them
  sent through ``/smsbulk`` in chunks once the transaction commits.
* :func:`send_message` and :func:`send_batch` do the sending. Each claims its rows with one
  conditional UPDATE (``queued -> sending``), so a message is sent at most once however many
  workers try.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Count, Sum
from django.utils import timezone

from .clients import get_client
from .conf import DEFAULT_ACCOUNT, conf
from .countries import country_of
from .creating import queue_batch, queue_for_sending, requeue_left_behind, send_bulk, send_sms
from .models import Message
from .sending import (
    MAX_CLOCK_SKEW,
    ChunkOutcome,
    SendOutcome,
    attempt_chunk,
    attempt_message,
    classify_failure,
    mark_failed,
    mark_stuck_unknown,
    plan_batch,
    send_batch,
    send_message,
)

logger = logging.getLogger("django_mitto")

__all__ = [
    "MAX_CLOCK_SKEW",
    "ChunkOutcome",
    "SendOutcome",
    "attempt_chunk",
    "attempt_message",
    "classify_failure",
    "get_client",
    "mark_failed",
    "mark_stuck_unknown",
    "plan_batch",
    "queue_batch",
    "queue_for_sending",
    "requeue_left_behind",
    "send_batch",
    "send_bulk",
    "send_message",
    "send_sms",
]


# -- conversion tracking and usage ---------------------------------------------------------------

__all__ += [
    "CountryUsage",
    "UsageReport",
    "local_usage",
    "mark_converted",
    "month_to_date",
    "usage",
]


def mark_converted(message_or_pk: Message | int) -> Message:
    """Tell Mitto the recipient of a message converted, and record ``converted_at``.

    Calls ``POST /sms/converted`` with the message's Mitto id, through the message's own
    account (``message.account``). A message already marked is
    returned as it is, without calling Mitto again. A message without a Mitto id raises
    ``ValidationError`` on ``provider_id``; Mitto's refusals raise
    :class:`~django_mitto.exceptions.MittoAPIError` (``status_code`` 400: conversion tracking
    is not enabled for the account; 404: Mitto does not know the id; 429: try again later).
    """
    pk = message_or_pk.pk if isinstance(message_or_pk, Message) else int(message_or_pk)
    message = Message.objects.get(pk=pk)
    if message.converted_at is not None:
        return message
    if not message.provider_id:
        raise ValidationError(
            {
                "provider_id": ValidationError(
                    "This message has no Mitto id (it was never accepted by Mitto), so it "
                    "cannot be marked as converted.",
                    code="required",
                )
            }
        )
    get_client(message.account).mark_converted(message.provider_id)
    Message.objects.filter(pk=pk, converted_at__isnull=True).update(converted_at=timezone.now())
    message.refresh_from_db()
    logger.info("SMS %s marked as converted at Mitto", message.pk)
    return message


@dataclass(frozen=True)
class CountryUsage:
    """One country of a usage report: Mitto's figures beside the ones counted here."""

    country: str
    mitto_messages: int | None = None
    mitto_cost: Decimal | None = None
    local_messages: int = 0
    local_parts: int = 0

    @property
    def difference(self) -> int | None:
        """Mitto's count minus the messages counted here (None without Mitto's figure)."""
        if self.mitto_messages is None:
            return None
        return self.mitto_messages - self.local_messages

    @property
    def matches(self) -> bool:
        """Whether Mitto's count equals the messages or the parts counted here.

        Mitto documents ``messagesCount`` as the number of messages; since it bills parts, a
        count of parts is taken as agreement too.
        """
        return self.mitto_messages in (self.local_messages, self.local_parts)


@dataclass(frozen=True)
class UsageReport:
    """Usage per country between two dates (both included): Mitto's and the local count."""

    start: dt.date
    end: dt.date
    rows: list[CountryUsage]
    currency: str = ""

    @property
    def mitto_messages(self) -> int:
        return sum(row.mitto_messages or 0 for row in self.rows)

    @property
    def mitto_cost(self) -> Decimal:
        return sum((row.mitto_cost or Decimal(0) for row in self.rows), Decimal(0))

    @property
    def local_messages(self) -> int:
        return sum(row.local_messages for row in self.rows)

    @property
    def local_parts(self) -> int:
        return sum(row.local_parts for row in self.rows)

    @property
    def differences(self) -> list[CountryUsage]:
        """The countries where Mitto's count matches neither local count."""
        return [row for row in self.rows if not row.matches]


def _period(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    if end < start:
        raise ValidationError(
            {"end": ValidationError("The end date is before the start date.", code="invalid")}
        )
    utc = dt.timezone.utc
    since = dt.datetime.combine(start, dt.time.min, tzinfo=utc)
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=utc)
    return since, until


def local_usage(
    start: dt.date, end: dt.date, *, account: str | None = None
) -> dict[str, tuple[int, int]]:
    """Messages and parts Mitto accepted from here between two UTC dates, per country.

    Counted: messages with a Mitto id whose ``sent_at`` falls in the period, test calls
    excluded (Mitto charges nothing for them). The country is the one stored with the message
    (ISO 3166-1 alpha-3, ``???`` for a number that belongs to no country), or that of the
    recipient for a message saved before countries were stored; a redacted message keeps its
    country. One query, grouped by recipient and country. ``account`` counts only that account's messages (None: every
    account).
    """
    since, until = _period(start, end)
    if not settings.USE_TZ:
        since, until = since.replace(tzinfo=None), until.replace(tzinfo=None)
    rows = (
        Message.objects.filter(test=False, sent_at__gte=since, sent_at__lt=until)
        .filter(**({} if account is None else {"account": account}))
        .exclude(provider_id="")
        .order_by()
        .values("recipient", "country")
        .annotate(n=Count("id"), parts=Sum("segments"))
    )
    totals: dict[str, tuple[int, int]] = {}
    for row in rows:
        country = row["country"] or country_of(row["recipient"])
        messages, parts = totals.get(country, (0, 0))
        totals[country] = (messages + row["n"], parts + (row["parts"] or 0))
    return totals


def usage(
    start: dt.date,
    end: dt.date,
    *,
    account_name: str | None = None,
    account: str = DEFAULT_ACCOUNT,
) -> UsageReport:
    """Mitto's usage per country (``POST /usage/bycountry``) beside the local count.

    ``account`` picks the configured account asked (its key) and counted here (its messages);
    ``account_name`` defaults to that account's ``ACCOUNT_NAME``. One row per country either side
    knows, sorted by country. Mitto's errors raise :class:`~django_mitto.exceptions.MittoError`
    (call :func:`local_usage` alone to show the local side anyway).
    """
    _period(start, end)
    acc = conf.account(account)
    name = acc.ACCOUNT_NAME if account_name is None else account_name
    mitto = {row.country: row for row in get_client(acc.name).usage(start, end, account_name=name)}
    # With one account every message is its; with several, only the ones sent through it.
    local = local_usage(start, end, account=acc.name if conf.SEVERAL_ACCOUNTS else None)
    rows = []
    for country in sorted(set(mitto) | set(local)):
        theirs = mitto.get(country)
        messages, parts = local.get(country, (0, 0))
        rows.append(
            CountryUsage(
                country=country,
                mitto_messages=theirs.messages_count if theirs else 0,
                mitto_cost=theirs.cost if theirs else None,
                local_messages=messages,
                local_parts=parts,
            )
        )
    currency = next((row.currency for row in mitto.values() if row.currency), "")
    return UsageReport(start=start, end=end, rows=rows, currency=currency)


def month_to_date(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The default usage period: the first day of the current month (UTC) to today."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    return today.replace(day=1), today
