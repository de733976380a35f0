"""The django-mitto admin: compose and follow messages, send in bulk, see the trends."""

from .batch import BatchAdmin
from .message import DeliveryReportAdmin, MessageAdmin
from .optout import OptOutAdmin

__all__ = ["BatchAdmin", "DeliveryReportAdmin", "MessageAdmin", "OptOutAdmin"]
