from django.db import models


class Order(models.Model):
    """A shop order: saving a new one creates its confirmation SMS (see receivers.py)."""

    customer = models.CharField(max_length=100)
    phone = models.CharField(max_length=20, help_text="E.164, for example +41791234567")
    total = models.DecimalField(max_digits=8, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)
    confirmation = models.ForeignKey(
        "django_mitto.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"Order {self.pk} for {self.customer}"
