"""Signal receivers: a new queued message is sent once its transaction commits."""

from __future__ import annotations

from typing import Any

from .conf import conf
from .creating import enqueue_on_commit
from .models import Message, Status


def send_new_message(
    sender: type[Message], instance: Message, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    """post_save receiver: dispatch a newly created ``queued`` message after commit.

    Loading fixtures (``raw``) sends nothing; a rolled-back save sends nothing.
    """
    if not created or raw or instance.status != Status.QUEUED or not conf.SEND_ON_SAVE:
        return
    enqueue_on_commit(instance.pk, using=kwargs.get("using"))
