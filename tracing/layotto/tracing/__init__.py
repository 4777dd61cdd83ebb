"""Layotto for Python: tracing across the SDK, the runtime and its backends.

Not implemented yet: this package reserves the distribution and the import path.
The tracing issue brings OpenTelemetry and SkyWalking propagation and exporters.
"""

__all__: list[str] = []
