"""SayHello: greets through a hello component and echoes the request's data."""

from __future__ import annotations

from typing import Any

from layotto.proto.runtime.v1 import runtime_pb2
from layotto.server.api.adapter import Context
from layotto.server.components.hello import HelloComponent
from layotto.server.components.loader import ComponentSet


class HelloApi:
    def __init__(self, components: ComponentSet) -> None:
        self._components = components

    async def SayHello(self, request: runtime_pb2.SayHelloRequest, context: Context) -> Any:
        name = request.service_name
        configured = self._components.names("hellos")
        if not name and len(configured) == 1:
            name = configured[0]
        component = self._components.find("hellos", name, "service_name")
        assert isinstance(component, HelloComponent)
        greeting = await component.greet(request.name)
        response = runtime_pb2.SayHelloResponse(hello=greeting)
        if request.HasField("data"):
            response.data.CopyFrom(request.data)
        return response
