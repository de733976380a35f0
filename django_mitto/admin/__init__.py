"""The django-mitto admin: compose and follow messages, send in bulk, see the trends."""

from .batch import BatchAdmin
from .message import MessageAdmin
from .reports import DeliveryReportAdmin

__all__ = ["BatchAdmin", "DeliveryReportAdmin", "MessageAdmin"]
