"""Log levels changed while the runtime runs, the way Spring Boot's actuator ``loggers`` endpoint does.

On the HTTP port, behind the API token when one is set (docs/observability.md):

* ``GET /actuator/loggers``: every level name, and the loggers that have a level of their own;
* ``GET /actuator/loggers/NAME``: ``{"configuredLevel": ..., "effectiveLevel": ...}`` (``ROOT``: the root logger);
* ``POST /actuator/loggers/NAME`` with ``{"configuredLevel": "DEBUG"}`` (null: inherit the parent's;
  not for ROOT): 204; a level that is not one of :data:`~layotto.server.logs.LOG_LEVELS`: 400.

A logger is never freed once made, so what a client can make is bounded: reading a logger that does
not exist is 404 (and makes none); setting one that does not exist yet (a component not loaded so far)
makes it, up to :data:`MAX_NEW_LOGGERS` names of at most :data:`MAX_NAME_LENGTH` characters (400 beyond).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from layotto.server.logs import LOG_LEVELS

ROOT = "ROOT"
LOGGERS_PATH = "/actuator/loggers"
#: loggers a client may make by setting the level of one that does not exist yet
MAX_NEW_LOGGERS = 256
MAX_NAME_LENGTH = 200
_made: set[str] = set()  # the names made through this endpoint


def _exists(name: str) -> bool:
    return name == ROOT or isinstance(logging.root.manager.loggerDict.get(name), logging.Logger)


def _levels(name: str) -> dict[str, str | None]:
    logger = logging.getLogger() if name == ROOT else logging.getLogger(name)
    configured = logging.getLevelName(logger.level) if logger.level != logging.NOTSET else None
    return {"configuredLevel": configured, "effectiveLevel": logging.getLevelName(logger.getEffectiveLevel())}


async def loggers_endpoint(request: web.BaseRequest) -> web.Response:
    """``/actuator/loggers[/NAME]``: read (GET) or set (POST ``{"configuredLevel": LEVEL}``) a logger's level."""
    name = request.path[len(LOGGERS_PATH) :].strip("/")
    if request.method in ("GET", "HEAD"):
        if name and not _exists(name):
            return web.json_response({"error": f"no logger {name[:MAX_NAME_LENGTH]!r}"}, status=404)
        return web.json_response(_levels(name) if name else _all_levels())
    if request.method != "POST" or not name:
        allowed = "GET, POST" if name else "GET"
        return web.json_response({"error": f"{request.method} not allowed"}, status=405, headers={"Allow": allowed})
    try:
        body = json.loads(await request.read() or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return web.json_response({"error": "expected a JSON object {configuredLevel: LEVEL}"}, status=400)
    return _set_level(name, body.get("configuredLevel"))


def _all_levels() -> dict[str, Any]:
    configured = [ROOT, *sorted(n for n, lg in logging.root.manager.loggerDict.items() if _has_level(lg))]
    return {"levels": LOG_LEVELS, "loggers": {n: _levels(n) for n in configured}}


def _set_level(name: str, level: Any) -> web.Response:
    """Set logger ``name``'s level (None: inherit its parent's, not for ROOT): 204, or 400 naming configuredLevel."""
    if not (level is None and name != ROOT) and (not isinstance(level, str) or level.upper() not in LOG_LEVELS):
        return web.json_response(
            {"error": f"configuredLevel: expected one of {', '.join(LOG_LEVELS)}, got {level!r}"}, status=400
        )
    if not _exists(name):
        if len(name) > MAX_NAME_LENGTH or len(_made) >= MAX_NEW_LOGGERS:
            return web.json_response(
                {
                    "error": f"NAME: a new logger's name is at most {MAX_NAME_LENGTH} characters, and at most "
                    f"{MAX_NEW_LOGGERS} loggers are made through this endpoint"
                },
                status=400,
            )
        _made.add(name)
    logger = logging.getLogger() if name == ROOT else logging.getLogger(name)
    logger.setLevel(logging.NOTSET if level is None else level.upper())
    logging.getLogger(__name__).info("log level of %s set to %s", name, level)
    return web.Response(status=204)


def _has_level(logger: logging.Logger | logging.PlaceHolder) -> bool:
    return isinstance(logger, logging.Logger) and logger.level != logging.NOTSET
