"""Retention: redact and delete old messages and reports as ``MITTO_RETENTION`` says.

The purge is a list of :class:`PurgeStep`, one per model and group of fields (:data:`STEPS`).
Each step picks the rows older than its age and changes (or deletes) them a batch at a time:
the next batch's primary keys are read first, without a lock, then one ``UPDATE`` or
``DELETE`` over the range up to the last of them runs in its own short transaction. A batch holds row
locks on at most ``batch_size`` rows, never a table lock, and only for as long as that one
statement takes; messages keep being sent and reports applied while the purge runs.

Redacting keeps what the statistics need: status, parts, country, Mitto id, dates, MCC/MNC,
error code. A redacted row is marked (``Message.redacted_at``, an empty report payload), so a
second run does nothing.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from django.apps import apps
from django.db import models, router, transaction
from django.db.models import F, Q, QuerySet, Value, signals
from django.db.models.functions import Replace
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from .conf import Retention, conf
from .countries import country_of
from .exceptions import MittoConfigurationError

__all__ = ["STEPS", "PurgeResult", "PurgeStep", "StepResult", "purge"]

logger = logging.getLogger(__name__)

REDACT: Literal["redact"] = "redact"
DELETE: Literal["delete"] = "delete"


@dataclass(frozen=True)
class PurgeStep:
    """One thing the purge does to one group of rows of one model.

    ``age`` says which limit of ``MITTO_RETENTION`` applies: ``"redact"``
    (``redact_after_days``) or ``"delete"`` (``delete_after_days``); a step whose limit is
    None is skipped. Rows whose ``date_field`` is older than the limit and that match
    ``pending`` (rows not done yet) are taken. ``values(now)`` gives the fields a redaction
    sets; a delete step has none. ``before(batch)`` runs inside each batch's transaction before
    the change (to save what the change removes, such as the country of a number).
    """

    name: str
    label: str | Promise
    model: str
    date_field: str
    age: Literal["redact", "delete"]
    pending: Q | None = None
    values: Callable[[datetime.datetime], dict[str, Any]] | None = None
    before: Callable[[QuerySet], None] | None = None

    def get_model(self) -> type[models.Model]:
        return apps.get_model(self.model)


def _store_countries(batch: QuerySet) -> None:
    """Save the country of each number about to be redacted that has none stored yet.

    Messages saved before countries were stored have none; one ``UPDATE`` per country.
    """
    by_country: dict[str, list[Any]] = {}
    for pk, recipient in batch.filter(country="").values_list("pk", "recipient"):
        by_country.setdefault(country_of(recipient), []).append(pk)
    for country, pks in by_country.items():
        batch.model._base_manager.filter(pk__in=pks).update(country=country)


def _redacted_message(now: datetime.datetime) -> dict[str, Any]:
    from .models import Message

    return {
        "recipient": Message.REDACTED_RECIPIENT,
        "text": "",
        # A refused number is quoted in the error ("+4179... is not a valid phone number"):
        # the right-hand side reads the row as it was, so this replaces the old recipient.
        # (The stubs type Replace's text as a Value; any expression works, F included.)
        "error": Replace(
            F("error"),
            F("recipient"),  # type: ignore[arg-type]
            Value(Message.REDACTED_RECIPIENT),
        ),
        "redacted_at": now,
    }


def _redacted_report(now: datetime.datetime) -> dict[str, Any]:
    return {"recipient": "", "payload": {}}


#: What the purge does, in order. Deletions come first, so rows about to go are not redacted;
#: reports go before their messages, so deleting a message has no report to detach.
STEPS: list[PurgeStep] = [
    PurgeStep(
        name="reports.delete",
        label=_("delivery reports deleted"),
        model="django_mitto.DeliveryReport",
        date_field="received_at",
        age=DELETE,
    ),
    PurgeStep(
        name="inbound.delete",
        label=_("inbound messages deleted"),
        model="django_mitto.InboundMessage",
        date_field="received_at",
        age=DELETE,
    ),
    PurgeStep(
        name="messages.delete",
        label=_("messages deleted"),
        model="django_mitto.Message",
        date_field="created_at",
        age=DELETE,
    ),
    PurgeStep(
        name="batches.delete",
        label=_("batches deleted"),
        model="django_mitto.Batch",
        date_field="created_at",
        age=DELETE,
    ),
    PurgeStep(
        name="messages.redact",
        label=_("messages redacted (recipient and text)"),
        model="django_mitto.Message",
        date_field="created_at",
        age=REDACT,
        pending=Q(redacted_at__isnull=True),
        values=_redacted_message,
        before=_store_countries,
    ),
    PurgeStep(
        name="reports.redact",
        label=_("delivery reports redacted (raw payload and recipient)"),
        model="django_mitto.DeliveryReport",
        date_field="received_at",
        age=REDACT,
        pending=~Q(payload={}) | ~Q(recipient=""),
        values=_redacted_report,
    ),
    PurgeStep(
        name="inbound.redact",
        label=_("inbound messages redacted (sender, text and raw payload)"),
        model="django_mitto.InboundMessage",
        date_field="received_at",
        age=REDACT,
        pending=~Q(payload={}) | ~Q(sender="") | ~Q(text=""),
        values=lambda now: {"sender": "", "text": "", "payload": {}},
    ),
]


@dataclass
class StepResult:
    """What one step did (or, in a dry run, would do)."""

    name: str
    label: str
    action: str
    before: datetime.datetime
    rows: int = 0
    batches: int = 0
    seconds: float = 0.0
    #: The longest single batch, in seconds: the longest any row lock was held.
    longest_batch: float = 0.0


@dataclass
class PurgeResult:
    """The outcome of :func:`purge`, step by step."""

    dry_run: bool
    now: datetime.datetime
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(step.rows for step in self.steps)

    @property
    def longest_batch(self) -> float:
        return max((step.longest_batch for step in self.steps), default=0.0)

    def count(self, name: str) -> int:
        """Rows changed (or to change) by the step named ``name``; 0 when it did not run."""
        return sum(step.rows for step in self.steps if step.name == name)


def _cutoffs(retention: Retention, now: datetime.datetime) -> dict[str, datetime.datetime | None]:
    def before(days: int | None) -> datetime.datetime | None:
        return None if days is None else now - datetime.timedelta(days=days)

    return {
        REDACT: before(retention.redact_after_days),
        DELETE: before(retention.delete_after_days),
    }


def _selection(
    step: PurgeStep, steps: list[PurgeStep], cutoffs: dict[str, datetime.datetime | None]
) -> QuerySet:
    model = step.get_model()
    before = cutoffs[step.age]
    queryset = model._base_manager.filter(**{f"{step.date_field}__lt": before})
    if step.pending is not None:
        queryset = queryset.filter(step.pending)
    deleted_by_this_run = cutoffs[DELETE] is not None and any(
        other.age == DELETE and other.model == step.model and other.date_field == step.date_field
        for other in steps
    )
    if step.age == REDACT and deleted_by_this_run:
        # Rows past the delete age are deleted by the same run: redacting them is wasted work,
        # and leaving them out makes a dry run's counts those of the real run.
        queryset = queryset.filter(**{f"{step.date_field}__gte": cutoffs[DELETE]})
    return queryset


def _run_step(
    step: PurgeStep,
    queryset: QuerySet,
    result: StepResult,
    now: datetime.datetime,
    batch_size: int,
    progress: Callable[[StepResult], None] | None,
) -> None:
    model = queryset.model
    using = router.db_for_write(model)
    started = time.monotonic()
    last: Any = None
    while True:
        remaining = queryset if last is None else queryset.filter(pk__gt=last)
        # The keys of the next batch, read without a lock; the change then takes the range
        # up to the last of them, so each statement touches at most ``batch_size`` rows.
        keys = list(remaining.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not keys:
            break
        upper = keys[-1]
        batch = remaining.filter(pk__lte=upper)
        batch_started = time.monotonic()
        with transaction.atomic(using=using):
            if step.before is not None:
                step.before(batch)
            if step.values is None:
                # delete() rather than a raw DELETE: relations to the rows (another app's
                # foreign key to a message, say) are handled as their on_delete says.
                if not (
                    signals.pre_delete.has_listeners(model)
                    or signals.post_delete.has_listeners(model)
                ):
                    # Nobody looks at the deleted rows: load their keys only, not every field.
                    batch = batch.only("pk")
                _total, per_model = batch.delete()
                changed = per_model.get(model._meta.label, 0)
            else:
                changed = batch.update(**step.values(now))
        took = time.monotonic() - batch_started
        result.batches += 1
        result.rows += changed
        result.longest_batch = max(result.longest_batch, took)
        result.seconds = time.monotonic() - started
        if progress is not None:
            progress(result)
        if len(keys) < batch_size:
            break
        last = upper
    result.seconds = time.monotonic() - started


def purge(
    now: datetime.datetime | None = None,
    dry_run: bool = False,
    *,
    batch_size: int | None = None,
    steps: list[PurgeStep] | None = None,
    progress: Callable[[StepResult], None] | None = None,
) -> PurgeResult:
    """Redact and delete what ``MITTO_RETENTION`` says is too old; return what was done.

    ``now`` (default: the current time) is the moment the ages are counted from. A dry run
    counts the rows each step would change and changes nothing. ``batch_size`` defaults to
    ``MITTO_RETENTION["batch_size"]`` (2000); ``steps`` to :data:`STEPS`. ``progress`` is
    called with the current step's result after each batch. Raises
    :class:`~django_mitto.exceptions.MittoConfigurationError` when ``MITTO_RETENTION`` is not
    set or malformed.
    """
    retention = conf.RETENTION
    if retention is None:
        raise MittoConfigurationError(
            "MITTO_RETENTION is not set: nothing is redacted or deleted. Set it, for example "
            'to {"redact_after_days": 90, "delete_after_days": 365}.'
        )
    if batch_size is not None and batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    size = batch_size or retention.batch_size
    now = now or timezone.now()
    steps = STEPS if steps is None else steps
    cutoffs = _cutoffs(retention, now)
    result = PurgeResult(dry_run=dry_run, now=now)
    started = time.monotonic()
    for step in steps:
        before = cutoffs[step.age]
        if before is None:
            continue
        queryset = _selection(step, steps, cutoffs)
        step_result = StepResult(
            name=step.name, label=str(step.label), action=step.age, before=before
        )
        result.steps.append(step_result)
        if dry_run:
            step_result.rows = queryset.count()
            continue
        _run_step(step, queryset, step_result, now, size, progress)
        logger.info(
            "Retention: %s: %d rows in %d batches, %.2f s (longest batch %.3f s).",
            step.name,
            step_result.rows,
            step_result.batches,
            step_result.seconds,
            step_result.longest_batch,
        )
    result.seconds = time.monotonic() - started
    return result
