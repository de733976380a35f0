"""The django-mitto admin: compose and follow messages, send in bulk, see the trends."""

from .batch import BatchAdmin
from .inbound import InboundMessageAdmin
from .message import MessageAdmin
from .optout import OptOutAdmin
from .reports import DeliveryReportAdmin

__all__ = [
    "BatchAdmin",
    "DeliveryReportAdmin",
    "InboundMessageAdmin",
    "MessageAdmin",
    "OptOutAdmin",
]
