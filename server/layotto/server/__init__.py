"""Layotto for Python: the application runtime (sidecar) serving the Layotto and Dapr APIs."""

from layotto.server.app import Runtime
from layotto.server.config import RuntimeConfig, embedded_defaults

__version__ = "0.1.0"

__all__ = ["Runtime", "RuntimeConfig", "__version__", "embedded_defaults"]
