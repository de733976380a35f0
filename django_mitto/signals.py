"""Signals sent by django-mitto. Connect receivers with ``signal.connect(func)``.

All are sent after the change is committed, by the code that made it.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger("django_mitto")

#: Mitto accepted a message. Arguments: ``sender`` (the Message class), ``message``, ``result``
#: (the :class:`~django_mitto.client.SendResult`).
message_sent = Signal()

#: A message could not be sent: Mitto refused it, it failed for good, or a person marked it
#: failed in the admin (then ``error`` is None). Arguments: ``sender``,
#: ``message``, ``error`` (the exception, or None).
message_failed = Signal()

#: A message's status changed through a delivery report. Arguments: ``sender``, ``message``,
#: ``old_status``, ``new_status``, ``report`` (the DeliveryReport).
message_status_changed = Signal()

#: A delivery report was received and stored (whatever it changed). Arguments: ``sender``,
#: ``report`` (the DeliveryReport), ``message`` (or None when it matches no message yet).
delivery_report_received = Signal()

#: A reply (MO message) was received and stored. Arguments: ``sender`` (the InboundMessage
#: class), ``inbound`` (the :class:`~django_mitto.models.InboundMessage`), ``message`` (the
#: Message it answers, or None when it cannot be told).
message_received = Signal()


def announce(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send ``signal`` to every receiver; one that raises is logged and stops nothing else."""
    for receiver, response in signal.send_robust(sender=sender, **kwargs):
        if isinstance(response, Exception):
            logger.error("Receiver %r of a django-mitto signal failed", receiver, exc_info=response)
