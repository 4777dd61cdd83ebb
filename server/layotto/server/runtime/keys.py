"""Key namespacing: where the Lock and Sequencer APIs put a request's key in a shared store.

Layotto's layout, chosen per component by its ``keyPrefix`` metadata: ``appid`` (the
default) namespaces keys by the app id, ``name`` by the component's name, ``none`` not at
all, and any other value is the namespace itself.
"""

from __future__ import annotations

SEPARATOR = "||"
"""Between a namespace and a key; a key naming a resource may not contain it."""


def namespaced_key(kind: str, strategy: str, app_id: str, component: str, key: str) -> str:
    """Layotto's key layout: ``lock|||<namespace>||<key>`` (``lock|||<key>`` without one)."""
    strategy_lower = strategy.lower()
    if strategy_lower == "appid":
        namespace = app_id
    elif strategy_lower == "name":
        namespace = component
    elif strategy_lower == "none":
        namespace = ""
    else:
        namespace = strategy
    return f"{kind}|||{namespace}{SEPARATOR}{key}" if namespace else f"{kind}|||{key}"
