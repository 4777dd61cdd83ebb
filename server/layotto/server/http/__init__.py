"""Dapr's HTTP API (v1.0 shapes), served beside the actuator on the runtime's HTTP port.

One module per building block converts HTTP (path, query, headers, JSON) into the runtime
layer's plain values and calls the same service as the gRPC handlers
(:class:`~layotto.server.runtime.services.RuntimeServices`); :mod:`.errors` answers errors as
daprd does. :class:`DaprHttpApi` is the actuator's fallback: it answers the paths the actuator
does not serve.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from layotto.server.http.bindings import BindingsHttp
from layotto.server.http.configuration import ConfigurationHttp
from layotto.server.http.errors import HttpSettings
from layotto.server.http.invoke import InvokeHttp
from layotto.server.http.jobs import JobsHttp
from layotto.server.http.lock import LockHttp
from layotto.server.http.metadata import MetadataHttp
from layotto.server.http.pubsub import PubSubHttp
from layotto.server.http.routing import ROUTE_KEY, Routes
from layotto.server.http.secrets import SecretsHttp
from layotto.server.http.state import StateHttp
from layotto.server.http_app import HttpApp
from layotto.server.runtime.invocation import Invoker
from layotto.server.runtime.services import RuntimeServices

#: the route template of an invocation addressed by its dapr-app-id header (any path)
INVOKE_BY_HEADER_ROUTE = "/{path} (dapr-app-id)"

__all__ = ["DaprHttpApi"]


class DaprHttpApi:
    """Dapr's endpoints over one runtime layer. Bodies over ``max_body_bytes`` are refused (413,
    ``ERR_MALFORMED_REQUEST``), and every call while ``serving()`` is False (503, reason
    RUNTIME_SHUTTING_DOWN). With an ``invoker``, service invocation is served too: under
    ``/v1.0/invoke/`` and on any path of a request with a ``dapr-app-id`` header. With an HTTP
    ``app``, configuration subscriptions deliver their changes to it (:meth:`aclose` stops them
    and closes its session)."""

    def __init__(
        self,
        services: RuntimeServices,
        max_body_bytes: int,
        serving: Callable[[], bool],
        invoker: Invoker | None = None,
        app: HttpApp | None = None,
    ) -> None:
        self._settings = HttpSettings(max_body_bytes, serving)
        self._routes = Routes()
        self._app = app
        self._configuration = ConfigurationHttp(services.configuration, app)
        self._invoke = InvokeHttp(invoker) if invoker is not None else None
        if self._invoke is not None:
            self._invoke.add_routes(self._routes)
        for front in (
            StateHttp(services.state),
            PubSubHttp(services.publisher),
            SecretsHttp(services.secrets),
            self._configuration,
            LockHttp(services.locks),
            MetadataHttp(services.metadata),
            JobsHttp(services.jobs),
            BindingsHttp(services.components),
        ):
            front.add_routes(self._routes)

    async def aclose(self) -> None:
        await self._configuration.aclose()
        if self._app is not None:
            await self._app.aclose()

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse | None:
        """The answer of the endpoint ``request`` names; None when no endpoint has its path."""
        if self._invoke is not None and self._invoke.addressed_by_header(request):
            request[ROUTE_KEY] = INVOKE_BY_HEADER_ROUTE
            return await self._invoke.by_header(request, self._settings)
        return await self._routes.answer(request, self._settings)
