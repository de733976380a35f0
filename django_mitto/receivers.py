"""Signal receivers: a new queued message is sent once its transaction commits."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from .conf import conf
from .models import Message, Status


def send_new_message(
    sender: type[Message], instance: Message, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    """post_save receiver: dispatch a newly created ``queued`` message after commit.

    Loading fixtures (``raw``) sends nothing; a rolled-back save sends nothing.
    """
    if not created or raw or instance.status != Status.QUEUED or not conf.SEND_ON_SAVE:
        return
    from .tasks import enqueue_message

    pk = instance.pk
    transaction.on_commit(lambda: enqueue_message(pk), using=kwargs.get("using"))
