"""A new order creates a confirmation SMS. django-mitto sends it once the order is committed."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from django_mitto.models import Message

from .models import Order


@receiver(post_save, sender=Order, dispatch_uid="orders.confirm_by_sms")
def confirm_by_sms(sender, instance: Order, created: bool, raw: bool = False, **kwargs) -> None:
    if not created or raw:
        return
    message = Message.objects.create(
        recipient=instance.phone,
        text=f"Thank you {instance.customer}! Order #{instance.pk} ({instance.total} CHF) is confirmed.",
        reference=f"order-{instance.pk}",
    )
    Order.objects.filter(pk=instance.pk).update(confirmation=message)
