"""The Dapr endpoints' routing table: (method, path pattern) -> a handler of a :class:`Call`.

Patterns are aiohttp's (``/v1.0/state/{store}/{key:.+}``: ``{name}`` is one path segment,
``{name:regex}`` a regular expression), matched as aiohttp's URL dispatcher matches them: against
the path with ``%2F`` and ``%25`` still escaped (each value then unescaped), patterns tried by the
longest static prefix first (the part before the first ``{``, up to its last ``/``), in
registration order within one prefix; routes of the same pattern added one after the other share
it (a method not among them: 405 with ``Allow``). A pattern without the request's method is matched
only when no other answers (it can only add to the 405's ``Allow``).

Own code rather than ``aiohttp.web.UrlDispatcher``: the dispatcher awaits a coroutine and builds
a match-info object per candidate pattern, which cost a GET of the state API about 4 µs of CPU
(about a quarter of the runtime's own work on that request, ``docs/performance.md``); this table runs the
same walk with one synchronous regular-expression match per candidate.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from layotto.server.http.errors import Call, HttpSettings

CallHandler = Callable[[Call], Awaitable[web.StreamResponse]]
#: the request key under which the matched route's template (``/v1.0/state/{store}``) is kept, for metrics
ROUTE_KEY = web.RequestKey("layotto.route", str)
#: set on a request whose handler is worth nothing once its client has gone (service invocation:
#: the call to the app is cancelled down the chain); the server cancels that handler on disconnect
CANCEL_ON_DISCONNECT = web.RequestKey("layotto.cancel_on_disconnect", bool)
#: a method a route serves whatever the request's method
ANY_METHOD = "*"
_PARAMETER = re.compile(r"\{(?P<name>[_a-zA-Z][_a-zA-Z0-9]*)(?::(?P<regex>[^{}]*))?\}")
_SEGMENT = "[^{}/]+"  # the regular expression of a {name} without its own


def unquote_value(value: str) -> str:
    """A path value as aiohttp's dispatcher gives it: ``%2F`` and ``%25`` unescaped."""
    if "%" not in value:
        return value
    return value.replace("%2F", "/").replace("%25", "%")


@dataclass
class _Pattern:
    """One path pattern and the handlers of its methods."""

    path: str
    template: str  # the pattern with each {name:regex} as {name} (aiohttp's ``canonical``)
    regex: re.Pattern[str] | None  # None: a path without parameters, matched as is
    handlers: dict[str, CallHandler] = field(default_factory=dict)

    def match(self, path: str) -> dict[str, str] | None:
        if self.regex is None:
            return {} if path == self.path else None
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        return {name: unquote_value(value) for name, value in found.groupdict().items()}


def _compile(path: str) -> _Pattern:
    """A pattern of ``path``; ValueError for a ``{`` or ``}`` that is not a parameter."""
    regex, template, position = "", "", 0
    for found in _PARAMETER.finditer(path):
        static = path[position : found.start()]
        if "{" in static or "}" in static:
            raise ValueError(f"invalid route path {path!r}")
        name, own = found.group("name"), found.group("regex")
        regex += re.escape(static) + f"(?P<{name}>{own if own is not None else _SEGMENT})"
        template += static + "{" + name + "}"
        position = found.end()
    rest = path[position:]
    if "{" in rest or "}" in rest:
        raise ValueError(f"invalid route path {path!r}")
    if not template:
        return _Pattern(path, path, None)
    return _Pattern(path, template + rest, re.compile(regex + re.escape(rest)))


def _index_key(template: str) -> str:
    """The static prefix a pattern is filed under (aiohttp's resource index key)."""
    if "{" in template:
        template = template.partition("{")[0].rpartition("/")[0]
    return template.rstrip("/") or "/"


class Routes:
    def __init__(self) -> None:
        self._index: dict[str, list[_Pattern]] = {}
        self._last: _Pattern | None = None

    def add(self, method: str, path: str, handler: CallHandler) -> None:
        """Route ``method`` (``*``: any) of ``path`` to ``handler``; ValueError for a path that is
        not a pattern, RuntimeError for a method the pattern already routes."""
        if not path.startswith("/"):
            raise ValueError(f"a route path starts with /, got {path!r}")
        pattern = self._last
        if pattern is None or pattern.path != path:
            pattern = self._last = _compile(path)
            self._index.setdefault(_index_key(pattern.template), []).append(pattern)
        method = method.upper()
        if method in pattern.handlers or ANY_METHOD in pattern.handlers:
            raise RuntimeError(f"{method} {path} is routed twice")
        pattern.handlers[method] = handler

    async def answer(self, request: web.BaseRequest, settings: HttpSettings) -> web.StreamResponse | None:
        """The answer of the endpoint ``request`` names (405 for another method); None when no
        endpoint has its path."""
        path = request.rel_url.path_safe
        method = request.method
        other_methods: list[_Pattern] = []  # matched only when no pattern answers: they make the 405
        part = path
        while part:
            for pattern in self._index.get(part, ()):
                handlers = pattern.handlers
                handler = handlers.get(method) or handlers.get(ANY_METHOD)
                if handler is None:
                    other_methods.append(pattern)
                    continue
                params = pattern.match(path)
                if params is not None:
                    request[ROUTE_KEY] = pattern.template
                    return await handler(Call(request, params, settings))
            if part == "/":
                break
            part = part.rpartition("/")[0] or "/"
        allowed = {verb for pattern in other_methods if pattern.match(path) is not None for verb in pattern.handlers}
        if allowed:
            listed = ", ".join(sorted(allowed))
            body = {"error": f"{method} not allowed", "allowed": listed}
            return web.json_response(body, status=405, headers={"Allow": listed})
        return None
