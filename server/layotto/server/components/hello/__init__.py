"""The Hello building block (SayHello): a greeting component, used to check wiring."""

from __future__ import annotations

from abc import abstractmethod

from layotto.server.components.base import Component


class HelloComponent(Component):
    @abstractmethod
    async def greet(self, name: str) -> str: ...
