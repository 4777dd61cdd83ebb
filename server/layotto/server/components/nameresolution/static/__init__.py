"""Static name resolution: app id -> the sidecar addresses listed in the config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from layotto.server.components.nameresolution import NameResolver


class StaticResolver(NameResolver):
    """Answers from ``apps`` (app id -> HOST:PORT of its sidecars' gRPC API); never changes."""

    def __init__(self, apps: Mapping[str, Sequence[str]]) -> None:
        self._apps = {app: tuple(addresses) for app, addresses in apps.items()}

    async def resolve(self, app_id: str) -> Sequence[str]:
        return self._apps.get(app_id, ())
