"""Dapr's lock API over HTTP (alpha1): ``POST /v1.0-alpha1/lock/{store}`` with
``{resourceId, lockOwner, expiryInSeconds}`` answers ``{"success": bool}``;
``POST /v1.0-alpha1/unlock/{store}`` with ``{resourceId, lockOwner}`` answers ``{"status": n}``
(0 SUCCESS, 1 LOCK_DOES_NOT_EXIST, 2 LOCK_BELONGS_TO_OTHERS, 3 INTERNAL_ERROR). Both call
:class:`~layotto.server.runtime.lock.LockService`, as the gRPC handlers do."""

from __future__ import annotations

from aiohttp import web

from layotto.server.http.errors import Call, dapr_errors, field_of, optional_string, require_type
from layotto.server.http.routing import Routes
from layotto.server.runtime.lock import LockService


class LockHttp:
    def __init__(self, locks: LockService) -> None:
        self._locks = locks

    def add_routes(self, routes: Routes) -> None:
        routes.add("POST", "/v1.0-alpha1/lock/{store}", self.try_lock)
        routes.add("POST", "/v1.0-alpha1/unlock/{store}", self.unlock)

    @dapr_errors("lock", "ERR_TRY_LOCK")
    async def try_lock(self, call: Call) -> web.Response:
        body = require_type(await call.json(), dict, "body", "an object")
        success = await self._locks.try_lock(
            call.params["store"],
            optional_string(field_of(body, "resourceId"), "resourceId"),
            optional_string(field_of(body, "lockOwner"), "lockOwner"),
            require_type(field_of(body, "expiryInSeconds", 0), int, "expiryInSeconds", "an integer"),
            "expiryInSeconds",
        )
        return web.json_response({"success": success})

    @dapr_errors("lock", "ERR_UNLOCK")
    async def unlock(self, call: Call) -> web.Response:
        body = require_type(await call.json(), dict, "body", "an object")
        status = await self._locks.unlock(
            call.params["store"],
            optional_string(field_of(body, "resourceId"), "resourceId"),
            optional_string(field_of(body, "lockOwner"), "lockOwner"),
        )
        return web.json_response({"status": int(status)})
