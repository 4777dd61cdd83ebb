"""InvokeBinding on both wire APIs (Layotto's ``Runtime`` and Dapr's ``Dapr``): one runtime path."""

from __future__ import annotations

from typing import Any

from layotto.server.api.adapter import Context
from layotto.server.components.loader import ComponentSet
from layotto.server.runtime.bindings import invoke_binding


class BindingsApi:
    """Serves InvokeBinding with the response class of one wire API."""

    def __init__(self, components: ComponentSet, response: Any) -> None:
        self._components = components
        self._response = response

    async def InvokeBinding(self, request: Any, context: Context) -> Any:
        result = await invoke_binding(
            self._components, request.name, request.operation, request.data, dict(request.metadata)
        )
        return self._response(data=result.data, metadata=dict(result.metadata))
