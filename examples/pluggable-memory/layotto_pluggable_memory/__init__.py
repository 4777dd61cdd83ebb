"""Example pluggable components over memory, speaking Dapr's ``dapr.proto.components.v1``."""

from layotto_pluggable_memory.bindings import MemoryQueueBinding, serve_binding
from layotto_pluggable_memory.pubsub import MemoryPubSubComponent, serve_pubsub
from layotto_pluggable_memory.state import MemoryStateComponent, serve_state

__all__ = [
    "MemoryPubSubComponent",
    "MemoryQueueBinding",
    "MemoryStateComponent",
    "serve_binding",
    "serve_pubsub",
    "serve_state",
]
