"""The django-mitto admin: compose and follow messages, send in bulk, see the trends."""

from .batch import BatchAdmin
from .inbound import InboundMessageAdmin
from .message import DeliveryReportAdmin, MessageAdmin
from .optout import OptOutAdmin

__all__ = [
    "BatchAdmin",
    "DeliveryReportAdmin",
    "InboundMessageAdmin",
    "MessageAdmin",
    "OptOutAdmin",
]
