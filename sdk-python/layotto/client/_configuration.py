"""Configuration: items an app reads, writes and watches, at (app id, group, label, key)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from layotto.client._stream import ResumableStream
from layotto.client._transport import StreamCall, Transport
from layotto.proto.runtime.v1 import runtime_pb2 as pb


@dataclass(frozen=True)
class ConfigurationItem:
    """One item; ``deleted`` marks a watch's report of an item that was removed."""

    key: str
    content: str
    group: str = "default"
    label: str = "default"
    tags: Mapping[str, str] = field(default_factory=dict)
    deleted: bool = False


def _from_wire(item: pb.ConfigurationItem) -> ConfigurationItem:
    return ConfigurationItem(
        item.key, item.content, item.group, item.label, dict(item.tags), item.metadata.get("deleted") == "true"
    )


class ConfigurationClient:
    """Reads, writes and watches configuration items; ``app_id`` defaults to the runtime's."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def get(
        self,
        store: str,
        keys: Sequence[str] = (),
        *,
        group: str = "",
        label: str = "",
        app_id: str = "",
        timeout: float | None = None,
    ) -> list[ConfigurationItem]:
        """The items of ``keys`` that exist; every item of the group and label when ``keys`` is empty."""
        request = pb.GetConfigurationRequest(store_name=store, app_id=app_id, group=group, label=label, keys=keys)
        response = await self._t.unary("GetConfiguration", request, timeout, idempotent=True)
        return [_from_wire(item) for item in response.items]

    async def save(
        self, store: str, items: Sequence[ConfigurationItem], *, app_id: str = "", timeout: float | None = None
    ) -> None:
        wire = [
            pb.ConfigurationItem(key=i.key, content=i.content, group=i.group, label=i.label, tags=i.tags) for i in items
        ]
        request = pb.SaveConfigurationRequest(store_name=store, app_id=app_id, items=wire)
        await self._t.unary("SaveConfiguration", request, timeout, idempotent=True)

    async def delete(
        self,
        store: str,
        keys: Sequence[str],
        *,
        group: str = "",
        label: str = "",
        app_id: str = "",
        timeout: float | None = None,
    ) -> None:
        request = pb.DeleteConfigurationRequest(store_name=store, app_id=app_id, group=group, label=label, keys=keys)
        await self._t.unary("DeleteConfiguration", request, timeout, idempotent=True)

    def watch(
        self, store: str, keys: Sequence[str] = (), *, group: str = "", label: str = "", app_id: str = ""
    ) -> ConfigurationWatch:
        """``async with client.configuration.watch(store, keys) as items:`` — the current items, then
        every change (``deleted`` for removals), until the block ends."""
        request = pb.SubscribeConfigurationRequest(store_name=store, app_id=app_id, group=group, label=label, keys=keys)
        return ConfigurationWatch(self._t, request)


class ConfigurationWatch(ResumableStream):
    """A watch over SubscribeConfiguration. Entering it waits until the runtime has established
    it; when the runtime or its store goes away, it is established again, and reports the items
    as they are then before the changes that follow."""

    def __init__(self, transport: Transport, request: pb.SubscribeConfigurationRequest) -> None:
        super().__init__(transport)
        self._request = request
        self._pending: list[ConfigurationItem] = []

    async def __aenter__(self) -> ConfigurationWatch:
        first = await self._open()
        self._pending = [_from_wire(item) for item in first.items] if first is not None else []
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _start(self) -> StreamCall:
        call = self._transport.stream("SubscribeConfiguration")
        await call.write(self._request)  # never half-closed: a half-closed stream would end the watch
        return call

    def __aiter__(self) -> ConfigurationWatch:
        return self

    async def __anext__(self) -> ConfigurationItem:
        while not self._pending:
            response = await self._read()  # after a lost stream: the items as they are now
            if response is None:
                raise StopAsyncIteration
            self._pending = [_from_wire(item) for item in response.items]
        return self._pending.pop(0)
