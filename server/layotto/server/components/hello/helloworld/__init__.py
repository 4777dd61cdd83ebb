"""The helloworld greeting component, as in Layotto."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, MetadataField
from layotto.server.components.hello import HelloComponent


class HelloWorld(HelloComponent):
    spec = ComponentSpec(
        type="helloworld",
        building_block="hellos",
        description="Answers SayHello with a fixed greeting, followed by the caller's name when given.",
        metadata=(MetadataField("hello", "The greeting.", default="greetings from Layotto"),),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._greeting = "greetings from Layotto"

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._greeting = str(metadata["hello"])

    async def greet(self, name: str) -> str:
        return f"{self._greeting}, {name}" if name else self._greeting
