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

    Loading fixtures (``raw``) sends nothing; a rolled-back save sends nothing. A message to a
    number that opted out ends ``rejected`` at once and is never sent (``send_sms`` checked
    it already, or was told to ignore the opt-out).
    """
    if not created or raw or instance.status != Status.QUEUED:
        return
    if not getattr(instance, "_mitto_opt_out_checked", False):
        from .optouts import reject_if_opted_out

        if reject_if_opted_out(instance):
            return
    if not conf.SEND_ON_SAVE:
        return
    enqueue_on_commit(instance.pk, using=kwargs.get("using"))
