"""The HTTP actuator: liveness, readiness (with component health) and info.

Also answers Dapr's ``/v1.0/healthz`` and ``/v1.0/healthz/outbound``, which Dapr's
Python SDK polls before its first call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from layotto.server.components.base import Health
from layotto.server.components.loader import ComponentSet

HEALTH_TIMEOUT_SECONDS = 2.0


class Actuator:
    def __init__(self, components: ComponentSet, info: dict[str, Any]) -> None:
        self._components = components
        self._info = info
        self.serving = False  # the gRPC server accepts calls
        self._runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/actuator/health/liveness", self._liveness)
        app.router.add_get("/actuator/health/readiness", self._readiness)
        app.router.add_get("/actuator/info", self._info_endpoint)
        app.router.add_get("/v1.0/healthz", self._dapr_healthz)
        app.router.add_get("/v1.0/healthz/outbound", self._dapr_healthz)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _component_health(self) -> dict[str, Health]:
        async def one(component: Any) -> Health:
            try:
                return await asyncio.wait_for(component.health(), HEALTH_TIMEOUT_SECONDS)
            except TimeoutError:
                return Health(up=False, details={"error": f"no answer within {HEALTH_TIMEOUT_SECONDS}s"})
            except Exception as error:  # health checks report, never raise
                return Health(up=False, details={"error": str(error)})

        pairs = list(self._components)
        results = await asyncio.gather(*(one(c) for _, c in pairs))
        return {f"{block}.{c.name}": h for (block, c), h in zip(pairs, results, strict=True)}

    async def _liveness(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "UP"})

    async def _readiness(self, request: web.Request) -> web.Response:
        health = await self._component_health()
        body: dict[str, Any] = {"components": {}}
        body["components"]["runtime_startup"] = {"status": "UP" if self.serving else "INIT"}
        for name, h in health.items():
            entry: dict[str, Any] = {"status": "UP" if h.up else "DOWN"}
            if h.details:
                entry["details"] = dict(h.details)
            body["components"][name] = entry
        up = self.serving and all(h.up for h in health.values())
        body["status"] = "UP" if up else ("DOWN" if self.serving else "INIT")
        return web.json_response(body, status=200 if up else 503)

    async def _info_endpoint(self, request: web.Request) -> web.Response:
        return web.json_response(self._info)

    async def _dapr_healthz(self, request: web.Request) -> web.Response:
        return web.Response(status=204 if self.serving else 503)
