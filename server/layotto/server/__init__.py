"""Layotto for Python: the application runtime (sidecar) serving the Layotto and Dapr APIs.

``Runtime``, ``RuntimeConfig`` and ``embedded_defaults`` are imported on first use, so that
``layotto --help`` and any ``layotto.server.*`` import do not pay for the whole runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from layotto.server.app import Runtime
    from layotto.server.config import RuntimeConfig, embedded_defaults

__version__ = "0.1.0"

__all__ = ["Runtime", "RuntimeConfig", "__version__", "embedded_defaults"]

_LAZY = {
    "Runtime": "layotto.server.app",
    "RuntimeConfig": "layotto.server.config",
    "embedded_defaults": "layotto.server.config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
