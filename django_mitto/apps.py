from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MittoConfig(AppConfig):
    name = "django_mitto"
    verbose_name = _("Mitto SMS")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks
        from django.db.models.signals import post_save

        from . import receivers
        from .checks import check_reply_settings, check_settings, check_throttle
        from .models import Message

        checks.register(check_settings, "django_mitto")
        checks.register(check_reply_settings, "django_mitto")
        checks.register(check_throttle, "django_mitto")
        post_save.connect(
            receivers.send_new_message, sender=Message, dispatch_uid="django_mitto.send_new_message"
        )
