"""Example pluggable components over memory, speaking Dapr's ``dapr.proto.components.v1``."""

from layotto_pluggable_memory.pubsub import MemoryPubSubComponent, serve_pubsub
from layotto_pluggable_memory.state import MemoryStateComponent, serve_state

__all__ = ["MemoryPubSubComponent", "MemoryStateComponent", "serve_pubsub", "serve_state"]
