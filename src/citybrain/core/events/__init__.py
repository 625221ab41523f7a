"""The transactional outbox: events written with the change they report, delivered after
commit, at least once, to subscribed handlers."""

from citybrain.core.events.dispatcher import (
    DeliveryStats,
    Dispatcher,
    HandlerRegistry,
    Subscription,
    default_registry,
    deliver_pending,
    subscribe,
)
from citybrain.core.events.models import EventDelivery, OutboxEvent
from citybrain.core.events.service import publish, validate_topic

__all__ = [
    "DeliveryStats",
    "Dispatcher",
    "EventDelivery",
    "HandlerRegistry",
    "OutboxEvent",
    "Subscription",
    "default_registry",
    "deliver_pending",
    "publish",
    "subscribe",
    "validate_topic",
]
